"""The catalogue of every resource the API server serves, as Kubernetes 1.32 serves it.

Routes, discovery, OpenAPI, storage keys and the clients all need the same facts about a
resource (group, version, plural, scope, verbs, short names, subresources). They come from
data rather than a hand-written table: lightkube-models' generated resource modules
(``_api_info`` of every class, read with ``ast`` because the modules import the lightkube
client, which is not installed) give group/version/kind, plural, verbs and subresources;
kubernetes-validate's v1.32 definitions give each kind's OpenAPI definition name.
What that data lacks is kept in the small tables below: short names and categories, the
connect subresources (exec, attach, portforward, proxy), and which API versions a default
1.32 server enables (GA versions only: every beta/alpha API is off by default in 1.32).

Storage keys are ``/registry/<plural>`` for built-ins, as upstream's etcd layout, and
``/registry/<group>/<plural>`` for CRDs (and, as upstream, for APIService and
CustomResourceDefinition). Upstream quirks such as ``/registry/minions`` or
``/registry/services/specs`` are not copied. Two resources share storage, as upstream:
core ``v1`` Event and ``events.k8s.io/v1`` Event both live under ``/registry/events``
(stored in the core v1 shape, ``storage_version="v1"``), and ``autoscaling/v1`` and
``autoscaling/v2`` HorizontalPodAutoscaler both under ``/registry/horizontalpodautoscalers``
(stored as ``autoscaling/v2``). A server reading through a resource whose ``api_version``
differs from its ``storage_version`` converts between the two.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.util
import logging
import os
import pickle
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.32.0"

# Non-core groups in the order a 1.32 server lists them in /apis (the aggregator sorts
# APIServices by group priority); groups added later (CRDs) follow, sorted by name.
BUILTIN_GROUP_ORDER = (
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
)

# Versions enabled by default in 1.32, preferred first (only GA versions are on by default).
SERVED_VERSIONS: dict[str, tuple[str, ...]] = {"": ("v1",), **{g: ("v1",) for g in BUILTIN_GROUP_ORDER}}
SERVED_VERSIONS["autoscaling"] = ("v2", "v1")

# kubectl short names, as each upstream REST storage's ShortNames().
SHORT_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "componentstatuses"): ("cs",),
    ("", "configmaps"): ("cm",),
    ("", "endpoints"): ("ep",),
    ("", "events"): ("ev",),
    ("", "limitranges"): ("limits",),
    ("", "namespaces"): ("ns",),
    ("", "nodes"): ("no",),
    ("", "persistentvolumeclaims"): ("pvc",),
    ("", "persistentvolumes"): ("pv",),
    ("", "pods"): ("po",),
    ("", "replicationcontrollers"): ("rc",),
    ("", "resourcequotas"): ("quota",),
    ("", "serviceaccounts"): ("sa",),
    ("", "services"): ("svc",),
    ("apps", "daemonsets"): ("ds",),
    ("apps", "deployments"): ("deploy",),
    ("apps", "replicasets"): ("rs",),
    ("apps", "statefulsets"): ("sts",),
    ("autoscaling", "horizontalpodautoscalers"): ("hpa",),
    ("batch", "cronjobs"): ("cj",),
    ("certificates.k8s.io", "certificatesigningrequests"): ("csr",),
    ("events.k8s.io", "events"): ("ev",),
    ("networking.k8s.io", "ingresses"): ("ing",),
    ("networking.k8s.io", "networkpolicies"): ("netpol",),
    ("policy", "poddisruptionbudgets"): ("pdb",),
    ("scheduling.k8s.io", "priorityclasses"): ("pc",),
    ("storage.k8s.io", "storageclasses"): ("sc",),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("crd", "crds"),
}

# Categories, as each upstream REST storage's Categories().
CATEGORIES: dict[tuple[str, str], tuple[str, ...]] = {
    **{
        gp: ("all",)
        for gp in (
            ("", "pods"),
            ("", "replicationcontrollers"),
            ("", "services"),
            ("apps", "daemonsets"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("batch", "cronjobs"),
            ("batch", "jobs"),
        )
    },
    **{
        gp: ("api-extensions",)
        for gp in (
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
            ("admissionregistration.k8s.io", "validatingadmissionpolicies"),
            ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("apiregistration.k8s.io", "apiservices"),
        )
    },
}

_CONNECT_VERBS = ("create", "delete", "get", "patch", "update")
# Connect subresources are not in the OpenAPI-derived data: (plural, subresource, options kind, verbs).
CONNECT_SUBRESOURCES = (
    ("pods", "attach", "PodAttachOptions", ("create", "get")),
    ("pods", "exec", "PodExecOptions", ("create", "get")),
    ("pods", "portforward", "PodPortForwardOptions", ("create", "get")),
    ("pods", "proxy", "PodProxyOptions", _CONNECT_VERBS),
    ("nodes", "proxy", "NodeProxyOptions", _CONNECT_VERBS),
    ("services", "proxy", "ServiceProxyOptions", _CONNECT_VERBS),
)

# In the 1.32 OpenAPI but registered only behind an alpha feature gate (InPlacePodVerticalScaling).
FEATURE_GATED_SUBRESOURCES = {("", "pods", "resize")}

# Verbs the data gets wrong for discovery: componentstatuses can't be watched.
VERB_OVERRIDES = {("", "componentstatuses"): ("get", "list")}

# Storage shared across API groups/versions (see module docstring): (group, plural) -> (prefix, api_version)
# Upstream stores core and events.k8s.io Events (and autoscaling v1/v2 HPAs) as one object with
# conversion between versions. Without conversion here, each version keeps its own objects.
SHARED_STORAGE: dict[tuple[str, str], tuple[str, str]] = {
    ("events.k8s.io", "events"): ("/registry/events.k8s.io/events", "events.k8s.io/v1"),
}
# Built-ins upstream keeps under a group-qualified key, like CRDs.
GROUP_QUALIFIED_STORAGE = {"apiregistration.k8s.io", "apiextensions.k8s.io"}

_LIGHTKUBE_VERBS = {"post": "create", "put": "update"}
_DROPPED_VERBS = {"global_list", "global_watch"}


@dataclass(frozen=True)
class SubresourceInfo:
    """A subresource such as ``status`` or ``scale``: its own kind and verbs."""

    name: str
    group: str
    version: str
    kind: str
    verbs: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class Resource:
    """One served resource in one group/version (autoscaling v1 and v2 are two Resources)."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: Mapping[str, SubresourceInfo] = field(default_factory=dict, hash=False, compare=False)
    # OpenAPI definition name, e.g. io.k8s.api.apps.v1.DaemonSet (None for CRDs without one)
    schema_ref: str | None = None
    # etcd-style key prefix without trailing slash; "" means the CRD layout /registry/<group>/<plural>
    storage_prefix: str = ""
    # api_version objects are stored as; "" means this resource's own api_version
    storage_version: str = ""
    # whether this version is its group's preferred version
    preferred: bool = True

    def __post_init__(self) -> None:
        if not self.storage_prefix:
            prefix = f"/registry/{self.group}/{self.plural}" if self.group else f"/registry/{self.plural}"
            object.__setattr__(self, "storage_prefix", prefix)
        if not self.storage_version:
            object.__setattr__(self, "storage_version", self.api_version)

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``apps/v1`` otherwise (the apiVersion field)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def scope(self) -> str:
        """``Namespaced`` or ``Cluster``, as aggregated discovery spells it."""
        return "Namespaced" if self.namespaced else "Cluster"

    @property
    def path_prefix(self) -> str:
        """``/api/v1`` or ``/apis/apps/v1``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def qualified_name(self) -> str:
        """``pods`` for core, ``daemonsets.apps`` otherwise (kubectl and our client's spelling)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def storage_key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}/{namespace}/{name}"
        return f"{self.storage_prefix}/{name}"

    def storage_version_hash(self) -> str:
        """Upstream's storageVersionHash: 8 bytes of sha256 over "group/version/kind", base64."""
        group, _, version = self.storage_version.rpartition("/")
        gvk = f"{group}/{version}/{self.kind}"
        return base64.b64encode(hashlib.sha256(gvk.encode()).digest()[:8]).decode()


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key for versions as Kubernetes orders them: GA > beta > alpha, then higher number.

    Non-Kubernetes-style versions sort last, alphabetically (upstream's version priority).
    """
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


class Catalogue:
    """Every served resource, indexed for routing, discovery and kubectl-style names.

    ``generation`` goes up on every change so callers (discovery) can cache by it.
    """

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        self._by_gvr: dict[tuple[str, str, str], Resource] = {
            (r.group, r.version, r.plural): r for r in resources}
        self.generation = 0
        self._reindex()  # once, not per resource: sorting ~60 resources 60 times cost 50 ms at start-up

    # ---- changes ---------------------------------------------------------------------------
    def add(self, resource: Resource) -> None:
        """Add or replace a resource (CRDs join this way)."""
        self._by_gvr[(resource.group, resource.version, resource.plural)] = resource
        self._reindex()

    def remove(self, group: str, version: str, plural: str) -> Resource | None:
        removed = self._by_gvr.pop((group, version, plural), None)
        if removed is not None:
            self._reindex()
        return removed

    def _reindex(self) -> None:
        self.generation += 1
        order = {g: i for i, g in enumerate(BUILTIN_GROUP_ORDER)}
        groups = {r.group for r in self._by_gvr.values() if r.group}
        self._groups = sorted(groups, key=lambda g: (order.get(g, len(order)), g))
        self._versions: dict[str, list[str]] = {}
        for g in ["", *self._groups]:
            vs = {r.version for r in self._by_gvr.values() if r.group == g}
            if not vs:
                continue
            builtin = SERVED_VERSIONS.get(g, ())
            self._versions[g] = sorted(
                vs, key=lambda v: (builtin.index(v) if v in builtin else len(builtin), version_priority(v))
            )
        group_rank = {g: i for i, g in enumerate(["", *self._groups])}
        self._ordered = sorted(
            self._by_gvr.values(),
            key=lambda r: (group_rank[r.group], self._versions[r.group].index(r.version), r.plural),
        )
        self._by_gvk = {(r.group, r.version, r.kind): r for r in reversed(self._ordered)}

    # ---- queries ---------------------------------------------------------------------------
    def all(self) -> list[Resource]:
        """Core first, then groups in /apis order, preferred version first, by plural."""
        return list(self._ordered)

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_gvr.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        return self._by_gvk.get((group, version, kind))

    def groups(self) -> list[str]:
        """Non-core group names in the order /apis lists them."""
        return list(self._groups)

    def versions(self, group: str) -> list[str]:
        """Served versions of a group ("" for core), preferred first."""
        return list(self._versions.get(group, ()))

    def preferred_version(self, group: str) -> str | None:
        vs = self._versions.get(group)
        return vs[0] if vs else None

    def resources_in(self, group: str, version: str) -> list[Resource]:
        return [r for r in self._ordered if r.group == group and r.version == version]

    def resolve(self, name: str) -> Resource | None:
        """A kubectl-style name to a resource in its group's preferred version.

        Accepts plural, singular, short name or kind (any case), optionally qualified as
        ``name.group`` or ``name.version.group``: ``ds``, ``daemonsets``, ``daemonset.apps``,
        ``deployments.v1.apps``, ``DaemonSet``. The core group wins ties, as kubectl's RESTMapper.
        """
        name = name.strip()
        if not name:
            return None
        candidates: list[tuple[str, str | None, str | None]] = [(name.lower(), None, None)]
        if "." in name:
            head, _, rest = name.partition(".")
            candidates.append((head.lower(), None, rest))
            ver, _, grp = rest.partition(".")
            if grp:
                candidates.append((head.lower(), ver, grp))
        for base, version, group in candidates:
            for r in self._ordered:
                if group is not None and r.group != group:
                    continue
                if version is not None and r.version != version:
                    continue
                if version is None and r.version != self._versions[r.group][0]:
                    continue
                if base in (r.plural, r.singular, r.kind.lower()) or base in r.short_names:
                    return r
        return None


# ---- building the built-in catalogue from data -----------------------------------------------


def _package_dir(name: str) -> Path:
    # find_spec locates a package without importing it (kubernetes_validate imports jsonschema)
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _lightkube_dir() -> Path:
    # find_spec("lightkube.resources") would import the parent package, and with the lightkube
    # client installed its __init__ pulls in httpx (~0.4 s): look inside the package's
    # directories instead (several with a namespace package).
    spec = importlib.util.find_spec("lightkube")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "resources").is_dir():
            return Path(location) / "resources"
    raise RuntimeError("lightkube-models is not installed")


def schema_dir() -> Path:
    """kubernetes-validate's JSON-schema rendering of the 1.32 OpenAPI definitions."""
    return _package_dir("kubernetes_validate") / "kubernetes-json-schema" / "v1.32.0-local"


@cache
def load_definitions() -> dict[str, Any]:
    """All 1.32 definitions by name, in kubernetes-validate's JSON-schema form (``#/$defs/`` refs)."""
    from kubeling.api import kubeling_kinds  # our own kinds (RolloutPlan) join the upstream definitions

    return orjson.loads((schema_dir() / "_definitions.json").read_bytes())["$defs"] | kubeling_kinds.definitions()


@cache
def gvk_definitions() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, from ``x-kubernetes-group-version-kind``."""
    out: dict[tuple[str, str, str], str] = {}
    for name, d in load_definitions().items():
        gvks = d.get("x-kubernetes-group-version-kind") or []
        if len(gvks) != 1:  # shared meta kinds (DeleteOptions, WatchEvent) are not resources
            continue
        g = gvks[0]
        out[(g["group"], g["version"], g["kind"])] = name
    return out


def _api_infos() -> Iterable[tuple[str, dict[str, Any]]]:
    """(base class, _api_info kwargs) for every class in lightkube's GA resource modules."""
    for path in sorted(_lightkube_dir().glob("*.py")):
        if not re.search(r"_v\d+$", path.stem):
            continue
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef) or not node.bases:
                continue
            for stmt in node.body:
                if not (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call)):
                    continue
                target = stmt.targets[0]
                if not (isinstance(target, ast.Name) and target.id == "_api_info"):
                    continue
                info: dict[str, Any] = {}
                for kw in stmt.value.keywords:
                    if isinstance(kw.value, ast.Call):  # ResourceDef(group, version, kind)
                        info[kw.arg or ""] = tuple(ast.literal_eval(a) for a in kw.value.args)
                    else:
                        info[kw.arg or ""] = ast.literal_eval(kw.value)
                yield ast.unparse(node.bases[0]), info


def _discovery_verbs(verbs: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({_LIGHTKUBE_VERBS.get(v, v) for v in verbs if v not in _DROPPED_VERBS}))


def build_builtin_catalogue() -> Catalogue:
    """The resources a default 1.32 API server serves."""
    gvk_defs = gvk_definitions()
    tops: dict[tuple[str, str, str], dict[str, Any]] = {}
    subs: dict[tuple[str, str, str], dict[str, SubresourceInfo]] = {}
    for base, info in _api_infos():
        group, version, kind = info["resource"]
        parent = info.get("parent")
        pgroup, pversion = (parent[0], parent[1]) if parent else (group, version)
        if pversion not in SERVED_VERSIONS.get(pgroup, ()):
            continue
        plural = info["plural"]
        if parent:
            action = info["action"]
            if (pgroup, plural, action) in FEATURE_GATED_SUBRESOURCES:
                continue
            subs.setdefault((pgroup, pversion, plural), {})[action] = SubresourceInfo(
                action, group, version, kind, _discovery_verbs(info["verbs"])
            )
        else:
            tops[(group, version, plural)] = {"kind": kind, "verbs": info["verbs"], "namespaced": "Namespaced" in base}
    for plural, action, kind, verbs in CONNECT_SUBRESOURCES:
        subs.setdefault(("", "v1", plural), {})[action] = SubresourceInfo(action, "", "v1", kind, verbs)

    resources = []
    for (group, version, plural), t in tops.items():
        kind = t["kind"]
        prefix, storage_version = SHARED_STORAGE.get((group, plural), ("", ""))
        if not prefix and group not in GROUP_QUALIFIED_STORAGE:
            prefix = f"/registry/{plural}"
            if group == "autoscaling" and version == "v1":
                prefix = "/registry/horizontalpodautoscalers.v1"
        resources.append(
            Resource(
                group=group,
                version=version,
                kind=kind,
                plural=plural,
                singular=kind.lower(),
                namespaced=t["namespaced"],
                verbs=VERB_OVERRIDES.get((group, plural)) or _discovery_verbs(t["verbs"]),
                short_names=SHORT_NAMES.get((group, plural), ()),
                categories=CATEGORIES.get((group, plural), ()),
                subresources=dict(sorted(subs.get((group, version, plural), {}).items())),
                schema_ref=gvk_defs.get((group, version, kind)),
                storage_prefix=prefix,
                storage_version=storage_version,
                preferred=SERVED_VERSIONS[group][0] == version,
            )
        )
    from kubeling.api import kubeling_kinds

    resources.extend(kubeling_kinds.resources())  # kubeling's own kinds (RolloutPlan)
    return Catalogue(resources)


# ---- a start-up cache of what is built from data ---------------------------------------------------
# Building the catalogue (ast over lightkube's modules, the 1.3 MB definitions for the kinds' schema
# names) cost ~0.1-0.2 s per process; each `kubeling up` (every test module, every kubeling_cluster)
# paid it. The result is pickled in a cache directory, keyed by everything it is built from: the data
# files' sizes and mtimes, the building modules' source and the Python version. A missing or
# unwritable cache only means building as before.

_KEY_SOURCES = ("catalogue.py", "kubeling_kinds.py")


def cache_dir() -> Path:
    """``$KUBELING_CACHE_DIR``, else ``$XDG_CACHE_HOME/kubeling``, else ``~/.cache/kubeling``."""
    explicit = os.environ.get("KUBELING_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubeling"


@cache
def _cache_key() -> str:
    h = hashlib.sha256(sys.version.encode())
    here = Path(__file__).resolve().parent
    for name in _KEY_SOURCES:
        h.update((here / name).read_bytes())
    defs = _package_dir("kubernetes_validate") / "kubernetes-json-schema"
    for path in (_lightkube_dir(), defs / "v1.32.0-local" / "_definitions.json"):
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def cached_build(name: str, build: Callable[[], Any]) -> Any:
    """``build()``'s result, from the start-up cache when it holds one for the current inputs."""
    if os.environ.get("KUBELING_NO_CACHE"):
        return build()
    try:
        path = cache_dir() / f"{name}-{_cache_key()}.pickle"
        with path.open("rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        pass
    except Exception:  # noqa: BLE001 - a corrupt or foreign file: rebuild and overwrite it
        log.debug("start-up cache %s unreadable; rebuilding", name, exc_info=True)
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)  # atomic: concurrent starts read a whole file or none
        for old in path.parent.glob(f"{name}-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - read-only home, full disk, unpicklable: run without the cache
        log.debug("start-up cache %s not written", name, exc_info=True)
    return value


_catalogue: Catalogue | None = None


def get_catalogue() -> Catalogue:
    """The process-wide catalogue, built on first use (from the start-up cache when it can)."""
    global _catalogue
    if _catalogue is None:
        resources = cached_build("catalogue", lambda: build_builtin_catalogue().all())
        _catalogue = Catalogue(resources)
    return _catalogue


def __getattr__(name: str) -> Any:
    # ``from kubeling.api.catalogue import CATALOGUE`` builds the singleton on first access.
    if name == "CATALOGUE":
        return get_catalogue()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
