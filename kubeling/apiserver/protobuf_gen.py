"""Build protobuf_messages.json, the field table protobuf.py decodes request bodies with.

kubectl's typed clients (create namespace/configmap/secret, drain's evictions) send
``application/vnd.kubernetes.protobuf`` bodies. The table joins two upstream sources:
generated.proto (field numbers and wire types) and types.go (JSON names, pointer and
omitempty, so that decoded zero values turn into the JSON Go would have produced).

Run: python -m kubeling.apiserver.protobuf_gen <k8s.io/api checkout> <k8s.io/apimachinery checkout>
(plain directories, or git dirs read at HEAD).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

OUT = Path(__file__).with_name("protobuf_messages.json")
_MESSAGE = re.compile(r"^message (\w+) \{")
_FIELD = re.compile(r"^\s+(optional|repeated)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
_STRUCT = re.compile(r"^type (\w+) struct \{")
_TAG = re.compile(r'json:"([^"]*)".*protobuf:"(\w+),(\d+),(opt|rep),name=(\w+)')


class Source:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.git = (root / "HEAD").exists() and not (root / ".git").exists()

    def files(self) -> list[str]:
        if self.git:
            out = subprocess.run(["git", "--git-dir", str(self.root), "ls-tree", "-r", "--name-only", "HEAD"],
                                 capture_output=True, text=True, check=True).stdout
            return out.split()
        return [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()]

    def read(self, path: str) -> str:
        if self.git:
            return subprocess.run(["git", "--git-dir", str(self.root), "show", f"HEAD:{path}"],
                                  capture_output=True, text=True, check=True).stdout
        return (self.root / path).read_text()


def parse_proto(text: str) -> tuple[str, dict[str, dict[int, list]]]:
    package = re.search(r"^package ([\w.]+);", text, re.M).group(1)  # type: ignore[union-attr]
    messages: dict[str, dict[int, list]] = {}
    current: dict[int, list] | None = None
    depth = 0
    for line in text.splitlines():
        m = _MESSAGE.match(line)
        if m:
            current = messages.setdefault(m.group(1), {})
            depth = 1
            continue
        if current is None:
            continue
        depth += line.count("{") - line.count("}")
        if depth <= 0:
            current = None
            continue
        f = _FIELD.match(line)
        if f:
            label, typ, key_t, val_t, name, num = f.groups()
            if key_t:
                current[int(num)] = [name, "map", _qualify(val_t, package), _qualify(key_t, package)]
            else:
                current[int(num)] = [name, "rep" if label == "repeated" else "opt", _qualify(typ, package)]
    return package, messages


_SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float", "sint32",
            "sint64", "fixed32", "fixed64"}


def _qualify(t: str, package: str) -> str:
    if t in _SCALARS:
        return t
    return t[1:] if t.startswith(".") else f"{package}.{t}"


def parse_types(text: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """struct -> proto field name -> (json name, keep zero values)."""
    out: dict[str, dict[str, tuple[str, bool]]] = {}
    current: dict[str, tuple[str, bool]] | None = None
    for line in text.splitlines():
        m = _STRUCT.match(line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None or "protobuf:" not in line:
            continue
        t = _TAG.search(line)
        if not t:
            continue
        json_tag, _wire, _num, _label, pname = t.groups()
        before = line.split("`", 1)[0].split()
        gotype = before[-1] if before else ""
        jname, _, opts = json_tag.partition(",")
        inline = jname == "" or "inline" in opts
        keep = gotype.startswith("*") or "omitempty" not in opts
        current[pname] = ("" if inline else jname, keep)
    return out


def build(api: Source, machinery: Source) -> dict[str, dict[str, list]]:
    table: dict[str, dict[str, list]] = {}
    for src, prefix in ((api, ""), (machinery, "")):
        files = src.files()
        for path in files:
            if not path.endswith("generated.proto") or "/v1alpha" in path or "testdata" in path:
                continue
            package, messages = parse_proto(src.read(path))
            gostructs: dict[str, dict[str, tuple[str, bool]]] = {}
            folder = path.rsplit("/", 1)[0]
            for f in files:
                if f.startswith(folder + "/") and f.count("/") == path.count("/") and f.endswith(".go") \
                        and not f.endswith(("_test.go", "generated.pb.go", "zz_generated.deepcopy.go")):
                    gostructs.update(parse_types(src.read(f)))
            for mname, fields in messages.items():
                tags = gostructs.get(mname, {})
                entry: dict[str, list] = {}
                for num, spec in fields.items():
                    jname, keep = tags.get(spec[0], (spec[0], False))
                    entry[str(num)] = [jname, keep, *spec[1:]]
                table[f"{prefix}{package}.{mname}"] = entry
    return table


def main() -> None:
    api, machinery = Source(Path(sys.argv[1])), Source(Path(sys.argv[2]))
    OUT.write_bytes(orjson.dumps(build(api, machinery), option=orjson.OPT_SORT_KEYS))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
