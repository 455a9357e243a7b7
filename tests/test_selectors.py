"""Label and field selector parsing, matching and canonical printing (upstream texts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeling.api.errors import StatusError
from kubeling.api.selectors import (
    convert_field_selector,
    field_set,
    format_label_selector,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
    validate_field_selector,
)


def res(group: str, kind: str, namespaced: bool = True, version: str = "v1") -> SimpleNamespace:
    return SimpleNamespace(group=group, kind=kind, namespaced=namespaced, version=version, plural=kind.lower() + "s")


def test_parse_and_canonical_string() -> None:
    sel = parse_label_selector("z=b,c==d,e!=f,g in (y,x),h notin (z),i,!j")
    assert str(sel) == "c==d,e!=f,g in (x,y),h notin (z),i,!j,z=b"
    assert sel.matches({"z": "b", "c": "d", "e": "x", "g": "x", "i": ""})
    assert not sel.matches({"z": "b", "c": "d", "g": "x", "i": "", "j": "1"})
    assert not sel.matches({"z": "b", "c": "d", "g": "q", "i": ""})


def test_empty_selects_everything() -> None:
    assert parse_label_selector("").empty
    assert parse_label_selector("  ").matches({})
    assert str(parse_label_selector("a in ()")) == "a in ()"


def test_gt_lt() -> None:
    sel = parse_label_selector("a>1,b<10")
    assert sel.matches({"a": "2", "b": "9"})
    assert not sel.matches({"a": "1", "b": "9"})
    assert not sel.matches({"a": "x", "b": "9"})


@pytest.mark.parametrize(("text", "message"), [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a=b,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a<x", "unable to parse requirement: values[0]: Invalid value: \"x\": "
            "for 'Gt', 'Lt' operators, the value must be an integer"),
])
def test_invalid_label_selectors(text: str, message: str) -> None:
    with pytest.raises(StatusError) as err:
        parse_label_selector(text)
    assert err.value.code == 400 and err.value.reason == "BadRequest"
    assert err.value.message == message


def test_invalid_key_and_value_messages() -> None:
    with pytest.raises(StatusError) as err:
        parse_label_selector("a/b/c=d")
    assert err.value.message.startswith('unable to parse requirement: <nil>: Invalid value: "a/b/c": '
                                        "a qualified name must consist of")
    with pytest.raises(StatusError) as err:
        parse_label_selector("a=-x-")
    assert err.value.message.startswith('unable to parse requirement: values[0][a]: Invalid value: "-x-": '
                                        "a valid label must be an empty string")


def test_from_dict() -> None:
    sel = label_selector_from_dict({"matchLabels": {"app": "web"},
                                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                                         {"key": "x", "operator": "DoesNotExist"}]})
    assert str(sel) == "app=web,tier in (a,b),!x"
    assert sel.matches({"app": "web", "tier": "a"})
    assert not sel.matches({"app": "web", "tier": "a", "x": "1"})
    assert label_selector_from_dict({}).matches({"any": "thing"})
    assert not label_selector_from_dict(None).matches({})
    with pytest.raises(StatusError) as err:
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
    assert err.value.message == '"Bogus" is not a valid label selector operator'
    with pytest.raises(StatusError):
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
    assert format_label_selector({"matchLabels": {"name": "fluentd"}}) == "name=fluentd"
    assert format_label_selector({}) == "<none>"


_key = st.from_regex(r"([a-z0-9]{1,5}\.)?[a-z]{1,3}/?[A-Za-z0-9]([-A-Za-z0-9_.]{0,5}[A-Za-z0-9])?", fullmatch=True)
_value = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,5}[A-Za-z0-9])?)?", fullmatch=True)
_req = st.one_of(
    st.builds(lambda k, v, op: f"{k}{op}{v}", _key, _value, st.sampled_from(["=", "==", "!="])),
    st.builds(lambda k, vs, op: f"{k} {op} ({','.join(vs)})", _key, st.lists(_value, min_size=1, max_size=3),
              st.sampled_from(["in", "notin"])),
    st.builds(lambda k, neg: ("!" if neg else "") + k, _key, st.booleans()),
    st.builds(lambda k, n, op: f"{k}{op}{n}", _key, st.integers(-1000, 1000), st.sampled_from([">", "<"])),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_req, min_size=1, max_size=4))
def test_round_trip(reqs: list[str]) -> None:
    try:
        sel = parse_label_selector(",".join(reqs))
    except StatusError:
        return  # e.g. a generated key that upstream also rejects
    assert str(parse_label_selector(str(sel))) == str(sel)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=!(),<> \tinot-_./\\0123é")), max_size=20))
def test_random_strings_only_raise_status_errors(text: str) -> None:
    try:
        sel = parse_label_selector(text)
    except StatusError as e:
        assert e.code == 400
        return
    sel.matches({"a": "b"})
    str(sel)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=!,\\. ")), max_size=16))
def test_random_field_selectors_only_raise_status_errors(text: str) -> None:
    try:
        sel = parse_field_selector(text)
    except StatusError as e:
        assert e.code == 400
        return
    assert str(parse_field_selector(str(sel))) == str(sel)


def test_field_selector_parse_and_match() -> None:
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Failed")
    assert str(sel) == "spec.nodeName=n1,status.phase!=Failed"
    assert sel.matches({"spec.nodeName": "n1", "status.phase": "Running"})
    assert not sel.matches({"spec.nodeName": "n1", "status.phase": "Failed"})
    assert parse_field_selector("a==b").matches({"a": "b"})
    assert parse_field_selector(r"a=x\,y\=z").terms[0].value == "x,y=z"
    assert str(parse_field_selector(r"a=x\,y")) == r"a=x\,y"
    assert parse_field_selector("").empty


@pytest.mark.parametrize(("text", "message"), [
    ("abc", "invalid selector: 'abc'; can't understand 'abc'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
    ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
])
def test_invalid_field_selectors(text: str, message: str) -> None:
    with pytest.raises(StatusError) as err:
        parse_field_selector(text)
    assert err.value.code == 400 and err.value.message == message


def test_field_label_conversion() -> None:
    pods = res("", "Pod")
    assert str(validate_field_selector(pods, "spec.host=n1")) == "spec.nodeName=n1"
    with pytest.raises(StatusError) as err:
        validate_field_selector(pods, "spec.foo=x")
    assert err.value.code == 400 and err.value.message == "field label not supported: spec.foo"
    with pytest.raises(StatusError) as err:
        validate_field_selector(res("apps", "DaemonSet"), "spec.foo=x")
    assert err.value.message == '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"'
    with pytest.raises(StatusError):
        validate_field_selector(res("", "Node", False), "metadata.namespace=x")
    ev = convert_field_selector(res("events.k8s.io", "Event"), parse_field_selector("regarding.name=p1"))
    assert str(ev) == "involvedObject.name=p1"


def test_field_sets() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                    "serviceAccountName": "default", "hostNetwork": True},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}}
    fs = field_set(res("", "Pod"), pod)
    assert fs["spec.nodeName"] == "n1" and fs["spec.hostNetwork"] == "true"
    assert fs["status.podIP"] == "10.0.0.5" and fs["metadata.namespace"] == "ns"
    assert validate_field_selector(res("", "Pod"), "spec.nodeName=n1,status.phase=Running").matches(fs)
    node = field_set(res("", "Node", False), {"metadata": {"name": "n"}, "spec": {"unschedulable": True}})
    assert node == {"metadata.name": "n", "spec.unschedulable": "true"}
    core_ev = {"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p"},
               "reason": "Scheduled", "source": {"component": "default-scheduler"}, "type": "Normal"}
    fs = field_set(res("", "Event"), core_ev)
    assert fs["involvedObject.kind"] == "Pod" and fs["source"] == "default-scheduler"
    new_ev = {"metadata": {"name": "e", "namespace": "default"}, "regarding": {"kind": "Pod", "name": "p"},
              "reason": "Scheduled", "reportingController": "kubelet", "type": "Normal", "note": "x"}
    fs = field_set(res("events.k8s.io", "Event"), new_ev)
    assert fs["involvedObject.name"] == "p" and fs["reportingComponent"] == "kubelet" and fs["source"] == "kubelet"
    assert field_set(res("", "Secret"), {"metadata": {"name": "s"}, "type": "Opaque"})["type"] == "Opaque"
