"""The fast checks of the schema walk (kubeling/api/schemacompile.py) against the walk itself.

schema.validate settles a clean body with a native check (jsonschema-rs) or a generated Python
function, and only walks it when they answer False. Both must never answer True where the walk
would report something, and the generated function must drop the same null-valued properties the
walk drops. The walk is the reference: these tests compare every answer with it, on bodies made
from the schema (valid ones, then damaged: wrong types, unknown fields, nulls, floats for integers,
out-of-range numbers, bad timestamps and quantities).
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeling.api import schema, schemacompile
from kubeling.api.errors import FieldError

ROOTS = {
    "Pod": ("", "v1", "Pod"),
    "DaemonSet": ("apps", "v1", "DaemonSet"),
    "Service": ("", "v1", "Service"),
    "ResourceQuota": ("", "v1", "ResourceQuota"),
    "Lease": ("coordination.k8s.io", "v1", "Lease"),
    "CRD": ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),  # JSONSchemaProps: recursive
}

TIMES = ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456Z", "2024-01-01t00:00:00+02:00",
         "2024-01-01 00:00:00z", "2024-01-01T00:00:00Z\n", "2024-01-01", "yesterday", ""]
QUANTITIES = ["1", "100m", "1Gi", "1.5Gi", ".5", "5.", "+1k", "-2M", "1e3", "1E3", "1Ei", " 1Mi ", "1.2.3",
              "1Zi", "abc", "", "1e", "0.0000000001"]
STRINGS = ["", "a", "app", "spec", "null", "1", "ünïcode"]
INTS = [0, 1, -1, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63, 2**64]


def _json(depth: int = 2) -> st.SearchStrategy[Any]:
    """Any JSON value, and the Python values that are close to one (1.0, True, big integers)."""
    scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(INTS), st.integers(),
                        st.sampled_from([1.0, 0.5, -3.25, 1e300]), st.sampled_from(STRINGS + TIMES + QUANTITIES))
    if depth <= 0:
        return scalars
    return st.one_of(scalars, st.lists(_json(depth - 1), max_size=2),
                     st.dictionaries(st.sampled_from(STRINGS), _json(depth - 1), max_size=2))


def _valid(node: schema.Node, depth: int) -> st.SearchStrategy[Any]:
    """A value the walk accepts for ``node`` (nested no deeper than ``depth`` objects)."""
    k = node.kind
    if k == schema.OBJ:
        if depth <= 0 or not node.props:
            return st.just({})
        names = sorted(node.props)
        return st.lists(st.sampled_from(names), max_size=4, unique=True).flatmap(
            lambda keys: st.fixed_dictionaries({n: _valid(node.props[n], depth - 1) for n in keys}))
    if k == schema.ARR:
        assert node.item is not None
        return st.lists(_valid(node.item, depth - 1), max_size=2) if depth > 0 else st.just([])
    if k == schema.MAP:
        assert node.item is not None
        return (st.dictionaries(st.sampled_from(STRINGS), _valid(node.item, depth - 1), max_size=2)
                if depth > 0 else st.just({}))
    if k == schema.STR:
        return st.one_of(st.sampled_from(STRINGS), st.text(max_size=5))
    if k == schema.BOOL:
        return st.booleans()
    if k == schema.INT:
        lo, hi = schema._INT32 if node.bits == 32 else schema._INT64
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0]))
    if k == schema.NUM:
        return st.one_of(st.integers(-10, 10), st.floats(allow_nan=False, allow_infinity=False))
    if k == schema.INTSTR:
        return st.one_of(st.integers(*schema._INT32), st.sampled_from(["25%", "http", ""]))
    if k == schema.QTY:
        return st.one_of(st.sampled_from(["1", "100m", "1Gi", "1.5", ".5", "1e3", "2Ki"]),
                         st.integers(-1000, 10**12), st.sampled_from([0.5, 1.0, 2.5e9]))
    if k == schema.TIME:
        return st.sampled_from(TIMES[:4])
    return _json(1).filter(lambda v: v is not None)  # ANY


def _damage(value: Any, data: st.DataObject, rate: float) -> Any:
    """``value`` with some of its parts replaced by other JSON, and some unknown keys added."""
    if data.draw(st.floats(0, 1)) < rate:
        return data.draw(_json())
    if type(value) is dict:
        out = {k: _damage(v, data, rate) for k, v in value.items()}
        if data.draw(st.floats(0, 1)) < rate / 2:
            out[data.draw(st.sampled_from(["bogus", "Spec", "x-y"]))] = data.draw(_json(1))
        return out
    if type(value) is list:
        return [_damage(v, data, rate) for v in value]
    return value


def _walk(node: schema.Node, obj: Any, field_validation: str = "Strict") -> tuple[Any, Any, Any]:
    """validate() without its fast checks: (errors as text, warnings, the object after)."""
    if not isinstance(obj, dict):  # not validate()'s to judge: the registry refuses it before
        return [], [], obj
    w = schema._Walk(prune=field_validation != "Strict")
    w.walk(node, obj, "", node.struct)
    if w.first_error is not None:
        errors: list[FieldError] = [w.first_error]
        warnings: list[str] = []
    elif field_validation == "Strict":
        errors, warnings = [FieldError("Unknown field", p) for p in w.unknown], []
    elif field_validation == "Warn":
        errors, warnings = [], [f'unknown field "{p}"' for p in w.unknown]
    else:
        errors, warnings = [], []
    return [(type(e).__name__, e.field, str(e)) for e in errors], warnings, obj


def _validated(gvk: tuple[str, str, str], obj: Any, field_validation: str) -> tuple[Any, Any, Any]:
    errors, warnings = schema.validate(gvk, obj, field_validation=field_validation)
    return [(type(e).__name__, e.field, str(e)) for e in errors], warnings, obj


def _outcome(fn: Any, *args: Any) -> Any:
    """fn's answer, or the type of what it raised (the walk cannot word an integer beyond 64 bits,
    which only YAML can bring: the fast checks must leave that to it, not accept it)."""
    try:
        return fn(*args)
    except Exception as e:
        return type(e)


_NATIVES: dict[int, Any] = {}


def _native(node: schema.Node) -> Any:
    """A native check of its own (not the one validate() keeps on the node), built once."""
    if id(node) not in _NATIVES:
        _NATIVES[id(node)] = schemacompile.native_checks(node)
    return _NATIVES[id(node)]


def _compare(gvk: tuple[str, str, str], body: Any) -> None:
    node = schema.root_node(gvk)
    assert node is not None
    for mode in ("Strict", "Warn", "Ignore"):  # validate() answers exactly what the walk answers
        assert _outcome(_validated, gvk, copy.deepcopy(body), mode) == \
            _outcome(_walk, node, copy.deepcopy(body), mode)
    reference = _outcome(_walk, node, copy.deepcopy(body))
    clean = isinstance(reference, tuple) and reference[0] == []
    # the generated function: never True on a body the walk refuses; drops what the walk drops
    mine = copy.deepcopy(body)
    if schemacompile.checker(node)(mine):
        assert clean and mine == reference[2]
    # the native check: never True on a body the walk refuses or would change (a null to drop)
    checks = _native(node)
    if checks is not None:
        native, only_nulls = checks
        if _outcome(native, copy.deepcopy(body)) is True:
            assert clean and body == reference[2]
        # its second chance, for bodies with nulls: drops what the walk drops
        mine = copy.deepcopy(body)
        if _outcome(only_nulls, mine) is True:
            assert clean and mine == reference[2]


@pytest.mark.parametrize("name", sorted(ROOTS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fast_checks_agree_with_the_walk(name: str, data: st.DataObject) -> None:
    gvk = ROOTS[name]
    node = schema.root_node(gvk)
    assert node is not None
    body = data.draw(_valid(node, 4))
    if data.draw(st.booleans()):
        body = _damage(body, data, data.draw(st.sampled_from([0.05, 0.2])))
    _compare(gvk, body)


@pytest.mark.parametrize("name", sorted(ROOTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_valid_bodies_take_a_fast_check(name: str, data: st.DataObject) -> None:
    """Not a correctness matter, the reason they exist: a body the walk accepts unchanged is
    settled by the native check, and with nulls removed by the generated function."""
    gvk = ROOTS[name]
    node = schema.root_node(gvk)
    assert node is not None
    body = data.draw(_valid(node, 4))
    if _walk(node, copy.deepcopy(body))[0] != []:
        return  # a quantity or timestamp only the walk takes (" 1Mi ", "...Z\n")
    assert schemacompile.checker(node)(copy.deepcopy(body))
    checks = _native(node)
    assert checks is not None
    native, _ = checks
    texts = [v for v in _leaves(body) if isinstance(v, str)]
    if not any(t.endswith("\n") or t.startswith(" ") or "e" in t.lower() for t in texts):
        assert native(copy.deepcopy(body))


def _leaves(value: Any) -> list[Any]:
    if type(value) is dict:
        return [x for v in value.values() for x in _leaves(v)]
    if type(value) is list:
        return [x for v in value for x in _leaves(v)]
    return [value]


def _pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec}}


@pytest.mark.parametrize("body", [
    _pod(priority=1.0),  # a float for an integer: the walk refuses it, JSON schema draft 6+ would not
    _pod(priority=True),
    _pod(priority=2**31),
    _pod(activeDeadlineSeconds=2**63),
    _pod(activeDeadlineSeconds=2**63 - 1),
    _pod(terminationGracePeriodSeconds=None),  # dropped
    _pod(nodeSelector={"a": None}),  # kept: the walk skips null map values
    _pod(containers=[None]),
    _pod(containers=[{"name": "c", "image": None, "resources": {"limits": {"cpu": "1e3", "memory": " 1Gi "}}}]),
    _pod(containers=[{"name": "c", "resources": {"limits": {"cpu": "1.2.3"}}}]),
    _pod(containers=[{"name": "c", "resources": {"limits": {"cpu": 2, "memory": 1.5e9}}}]),
    _pod(containers=[{"name": "c", "ports": [{"containerPort": "80"}]}]),
    _pod(containers=[{"name": "c", "livenessProbe": {"httpGet": {"port": 2**31}}}]),
    _pod(containers=[{"name": "c", "livenessProbe": {"httpGet": {"port": 8080.0}}}]),
    _pod(containers=[{"name": "c", "livenessProbe": {"httpGet": {"port": "http"}}}]),
    _pod(containers=[{"name": "c", "args": ["a", None, 1]}]),
    _pod(containers=[{"name": "c", "bogus": 1}], extra=2),
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": "2024-01-01T00:00:00Z\n"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": "2024-13-01"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"creationTimestamp": datetime.datetime(2024, 1, 1)}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": ("a",)}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": b"x"}},
    {"apiVersion": "v1", "kind": "Pod", "status": {"conditions": [{"type": "Ready", "lastProbeTime": None}]}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "annotations": {"a": 1}}},
])
def test_edge_cases(body: dict[str, Any]) -> None:
    _compare(("", "v1", "Pod"), body)


@pytest.mark.parametrize(("gvk", "body", "dropped"), [
    (("", "v1", "Pod"), {"metadata": {"creationTimestamp": None, "labels": {"a": None}},
                         "spec": {"containers": [{"name": "c", "args": [None], "ports": [{"containerPort": None}]}]},
                         "status": {"conditions": [{"type": "Ready", "lastProbeTime": None}]}}, 3),
    # JSONSchemaProps: properties named like keywords, a map of schemas, free-form JSON kept as it is
    (ROOTS["CRD"], {"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {
        "items": None, "properties": {"a": None, "b": {"type": None, "default": {"x": None}}},
        "additionalProperties": None, "enum": [None]}}}]}}, 3),
])
def test_nulls_take_the_second_chance(gvk: tuple[str, str, str], body: dict[str, Any], dropped: int) -> None:
    node = schema.root_node(gvk)
    assert node is not None
    checks = _native(node)
    assert checks is not None
    native, only_nulls = checks
    expected = _walk(node, copy.deepcopy(body))
    assert expected[0] == [] and _nulls(body) - _nulls(expected[2]) == dropped
    assert not native(copy.deepcopy(body))
    mine = copy.deepcopy(body)
    assert only_nulls(mine) and mine == expected[2]
    _compare(gvk, body)


def _nulls(value: Any) -> int:
    return sum(1 for v in _leaves(value) if v is None)


def test_crd_schema_is_recursive_and_free_form_where_upstream_is() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "as.example.com"},
           "spec": {"group": "example.com", "names": {"plural": "as", "kind": "A"}, "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "properties": {"spec": {"type": "object", "default": {"a": [1, None]},
                                                "properties": {"n": {"x-kubernetes-int-or-string": True}}},
                                       "e": {"type": "object", "x-kubernetes-embedded-resource": True}}}}}]}}
    gvk = ROOTS["CRD"]
    _compare(gvk, crd)
    node = schema.root_node(gvk)
    assert node is not None
    checks = _native(node)
    assert checks is not None and checks[0](copy.deepcopy(crd))
    bad = copy.deepcopy(crd)
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["propertiez"] = {}
    _compare(gvk, bad)
    assert [str(e) for e in schema.validate(gvk, bad)[0]] == [
        'unknown field "spec.versions[0].schema.openAPIV3Schema.properties.spec.propertiez"']


def test_a_dict_subclass_is_walked() -> None:
    class Body(dict):  # type: ignore[type-arg]
        pass
    errors, _ = schema.validate(("", "v1", "Pod"), Body(kind="Pod"))
    assert [str(e) for e in errors] == ["json: cannot unmarshal object into Go struct field Pod. of type v1.Pod"]


def test_the_generated_function_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a usable jsonschema-rs, validate() rests on the generated function and the walk."""
    monkeypatch.setattr(schemacompile, "_NATIVE", [False])
    node = schema.root_node(("", "v1", "Pod"))
    assert node is not None and schemacompile.native_checker(node) is None
    monkeypatch.setattr(node, "native", schema._never)
    assert schema.validate(("", "v1", "Pod"), _pod()) == ([], [])
    body = _pod(priority=None, containers=[{"name": "c", "bogus": 1}])
    errors, warnings = schema.validate(("", "v1", "Pod"), body, field_validation="Warn")
    assert errors == [] and warnings == ['unknown field "spec.containers[0].bogus"']
    assert body["spec"] == {"containers": [{"name": "c"}]}


def test_hot_kinds_are_compiled_in_the_background_after_start(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods, leases, nodes and events get their native check shortly after start-up, without
    waiting for schema.COMPILE_AFTER writes; a rarely written kind still waits."""
    import asyncio

    from kubeling.apiserver import server as server_mod
    from kubeling.apiserver.bootstrap import bootstrap
    from kubeling.storage import SqliteStore

    monkeypatch.setattr(server_mod, "PRECOMPILE_AFTER", 0.0)

    async def scenario() -> None:
        store = SqliteStore(str(tmp_path / "state.db"), compact_interval=0)
        await store.start()
        try:
            srv = server_mod.ApiServer(store, tokens={})
            await bootstrap(srv.registry, ca_pem="x")
            cat = srv.catalogue
            hot = [cat.lookup(*gvr) for gvr in server_mod.HOT_RESOURCES]
            cold = cat.lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
            nodes = [schema.root_node(r) for r in [*hot, cold]]
            for node in nodes:  # as in a fresh process (other tests may have compiled them)
                assert node is not None
                monkeypatch.setattr(node, "native", None)
            await srv.start()
            await asyncio.wait_for(srv._precompiling, 60)  # type: ignore[arg-type]
            assert all(node.native is not None for node in nodes[:-1])  # type: ignore[union-attr]
            assert nodes[-1].native is None  # type: ignore[union-attr]
            await srv.close()
        finally:
            await store.close()

    asyncio.run(scenario())
