"""The start-up shortcuts change nothing a client sees: the cached catalogue is the built one, a bad
cache file is rebuilt, schemas compiled on demand match, and lightkube's package is never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubeling.api import catalogue, schema


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBELING_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KUBELING_NO_CACHE", raising=False)
    return tmp_path


def test_cached_catalogue_equals_built(cache_dir: Path) -> None:
    built = catalogue.build_builtin_catalogue().all()
    first = catalogue.cached_build("catalogue", lambda: built)
    files = list(cache_dir.glob("catalogue-*.pickle"))
    assert len(files) == 1
    again = catalogue.cached_build("catalogue", lambda: pytest.fail("built although cached"))
    assert again == first == built
    assert [r.subresources for r in again] == [r.subresources for r in built]
    assert [(r.schema_ref, r.storage_prefix, r.preferred) for r in again] == \
        [(r.schema_ref, r.storage_prefix, r.preferred) for r in built]


def test_corrupt_cache_is_rebuilt_and_replaced(cache_dir: Path) -> None:
    catalogue.cached_build("catalogue", lambda: [1, 2])
    (path,) = cache_dir.glob("catalogue-*.pickle")
    path.write_bytes(b"not a pickle")
    assert catalogue.cached_build("catalogue", lambda: [3]) == [3]
    assert catalogue.cached_build("catalogue", lambda: pytest.fail("built although cached")) == [3]


def test_stale_cache_files_are_removed(cache_dir: Path) -> None:
    stale = cache_dir / "catalogue-0123456789abcdef01234567.pickle"
    stale.write_bytes(b"old")
    catalogue.cached_build("catalogue", lambda: [1])
    assert not stale.exists()


def test_unwritable_cache_dir_still_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("KUBELING_CACHE_DIR", str(blocker / "sub"))  # a directory cannot be made there
    assert catalogue.cached_build("catalogue", lambda: ["built"]) == ["built"]


def test_catalogue_built_once_indexed_like_one_by_one() -> None:
    resources = catalogue.build_builtin_catalogue().all()
    one_by_one = catalogue.Catalogue()
    for r in resources:
        one_by_one.add(r)
    at_once = catalogue.Catalogue(resources)
    assert at_once.all() == one_by_one.all()
    assert at_once.groups() == one_by_one.groups()
    assert at_once.generation > 0


def test_lazy_schema_compile_resolves_refs_and_cycles() -> None:
    compiled = schema._compiled()
    pod = schema.root_node(("", "v1", "Pod"))
    assert pod is not None and pod.struct == "Pod"
    containers = pod.child("spec").child("containers")  # type: ignore[union-attr]
    assert containers is not None and containers.item is not None
    assert containers.item.child("image").go == "string"  # type: ignore[union-attr]
    # JSONSchemaProps refers to itself: the node is shared, not compiled twice
    props = schema.node_for_definition(
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps")
    assert props is not None
    assert props.child("properties").item is props  # type: ignore[union-attr]
    assert schema.node_for_definition("no.such.Definition") is None
    assert len(compiled.nodes) < len(compiled.defs)  # only what was asked for (and what it refers to)


def test_startup_imports_stay_light() -> None:
    code = ("import sys; from kubeling.api import catalogue, schema; catalogue.get_catalogue(); "
            "schema.root_node(('', 'v1', 'Pod')); import kubeling.cli.main; "
            "print(sorted(m for m in ('lightkube', 'kubernetes_validate', 'jsonschema', 'rich', 'aiohttp', "
            "'cryptography', 'prometheus_client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
