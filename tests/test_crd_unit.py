"""Unit tests of the CRD machinery: structural schemas, CEL rules, printer columns, CRD validation."""

from __future__ import annotations

from kubeling.apiextensions import cel, crd, printers, structural

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max", "fieldPath": ".min"},
                {"rule": "self.name.lowerAscii().startsWith('a')", "messageExpression": "'bad name ' + self.name"},
                {"rule": "self.max >= oldSelf.max", "message": "max may not shrink", "reason": "FieldValueForbidden"},
                {"rule": "quantity(self.size).isLessThan(quantity('1Gi'))", "message": "too big"},
            ],
            "properties": {
                "name": {"type": "string", "default": "abc"},
                "min": {"type": "integer", "default": 0},
                "max": {"type": "integer", "default": 5, "maximum": 10},
                "size": {"type": "string", "default": "1Mi"},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "when": {"type": "string", "format": "date-time", "nullable": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
    },
}


def _obj(**spec):
    return {"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "n"}, "spec": spec}


def test_prune_and_default():
    obj = _obj(bogus=1, free={"any": {"thing": 1}})
    assert structural.prune(SCHEMA, obj) == ["spec.bogus"]
    structural.apply_defaults(SCHEMA, obj)
    assert obj["spec"] == {"free": {"any": {"thing": 1}}, "name": "abc", "min": 0, "max": 5, "size": "1Mi"}


def test_validation_messages():
    errs = [str(e) for e in structural.validate(SCHEMA, _obj(max=11, port=[1], tags=["a", "a"], when="nope"))]
    assert "spec.max: Invalid value: 11: spec.max in body should be less than or equal to 10" in errs
    assert 'spec.port: Invalid value: "array": spec.port in body must be of type integer,string: "array"' in errs
    assert 'spec.tags[1]: Duplicate value: "a"' in errs
    assert 'spec.when: Invalid value: "nope": spec.when in body must be of type date-time: "nope"' in errs
    assert structural.validate(SCHEMA, _obj(port="http", when=None)) == []


def test_cel_rules_messages_and_transitions():
    good = _obj(name="Abc", min=1, max=3, size="10Mi")
    assert cel.evaluate(SCHEMA, good) == []
    errs = [str(e) for e in cel.evaluate(SCHEMA, _obj(name="zed", min=4, max=3, size="2Gi"))]
    assert 'spec.min: Invalid value: "object": min must not exceed max' in errs
    assert 'spec: Invalid value: "object": bad name zed' in errs
    assert 'spec: Invalid value: "object": too big' in errs
    assert cel.evaluate(SCHEMA, _obj(name="a", min=0, max=2, size="1"), _obj(name="a", min=0, max=3, size="1")) \
        and "spec: Forbidden: max may not shrink" in [str(e) for e in cel.evaluate(
            SCHEMA, _obj(name="a", min=0, max=2, size="1"), _obj(name="a", min=0, max=3, size="1"))]


def test_cel_compile_errors_and_extensions():
    errs = cel.compile_errors({"type": "object", "x-kubernetes-validations": [{"rule": "self.x <"}]})
    assert errs and "compilation failed" in str(errs[0])
    s = {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.items.isSorted() && self.s.split(',').size() == 2 && url(self.u).getHost() == 'h:8080'"
                 " && self.s.find('[0-9]+') == '12'"}]}
    assert cel.evaluate(s, {"items": [1, 2, 3], "s": "a12,b", "u": "https://h:8080/p"}) == []


def test_printer_jsonpath():
    obj = {"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]},
           "spec": {"items": [{"n": 1}, {"n": 2}]}}
    assert printers.jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert printers.jsonpath(obj, ".spec.items[*].n") == [1, 2]
    table = printers.to_table([{"name": "Ready", "type": "string",
                                "jsonPath": '.status.conditions[?(@.type=="Ready")].status'}], [obj])
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready"]
    assert table["rows"][0]["cells"] == ["x", "True"]


def test_crd_validation_and_build():
    body = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "foos.x.io"},
            "spec": {"group": "x.io", "scope": "Cluster", "names": {"plural": "foos", "kind": "Foo"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"properties": {"a": {"type": "string"}}}}}]}}
    errs = [str(e) for e in crd.validate(body)]
    assert "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root" in errs
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["type"] = "object"
    assert crd.validate(body) == []
    (res, info), = crd.build(body)
    assert res.storage_prefix == "/registry/x.io/foos" and not res.namespaced
    assert info.definition_name == "io.x.v1.Foo"
    status = crd.compute_status(body)
    assert [c["type"] for c in status["conditions"]] == ["NamesAccepted", "Established"]
    assert status["storedVersions"] == ["v1"]


def test_cel_ip_and_cidr_library_as_calico_uses_it():
    from kubeling.apiextensions import cel

    cases = {
        'isIP("10.0.0.1") && !isIP("10.0.0.300") && !isIP("fe80::1%eth0")': True,
        'ip("10.0.0.1").family() == 4 && ip("fd00::1").family() == 6': True,
        'cidr("10.0.0.0/8").containsIP("10.1.2.3") && !cidr("10.0.0.0/8").containsIP(ip("11.1.2.3"))': True,
        'cidr("10.0.0.0/8").containsCIDR("10.1.0.0/16") && !cidr("10.0.0.0/16").containsCIDR("10.0.0.0/8")': True,
        'cidr("10.1.2.3/8").masked() == cidr("10.0.0.0/8") && cidr("10.1.2.3/8").prefixLength() == 8': True,
        '!cidr("169.254.0.0/16").containsIP(cidr("192.168.0.0/16").ip())': True,
        'isCIDR("fe80::/10") && !isCIDR("10.0.0.1")': True,
        'ip("127.0.0.1").isLoopback() && ip("0.0.0.0").isUnspecified() && ip("8.8.8.8").isGlobalUnicast()': True,
    }
    for expr, want in cases.items():
        got, err = cel._result(cel.compile_expr(expr), {})
        assert err is None and got is want, (expr, got, err)
    _, err = cel._result(cel.compile_expr('ip("not-an-ip").family()'), {})
    assert err and "parse error" in err
