"""Dynamic admission: calling Mutating/ValidatingWebhookConfigurations as upstream does.

Each matching webhook gets an ``admission.k8s.io/v1`` AdmissionReview over HTTPS (verified
with the configuration's ``caBundle``), within ``timeoutSeconds``. Mutating webhooks run first,
in order, and their base64 JSONPatch responses are applied; validating webhooks then see the
final object. A webhook that cannot be reached follows its ``failurePolicy``: ``Ignore`` skips
it, ``Fail`` refuses only the requests it covers, with upstream's message. Matching follows
``rules`` (operations, groups, versions, resources with ``*`` and ``x/status``, scope),
``matchPolicy``, ``namespaceSelector`` and ``objectSelector``. Configurations are cached and
re-read after any write to them. Service references cannot be reached here (no cluster
network), so only ``clientConfig.url`` webhooks can answer.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from typing import Any

import aiohttp
import jsonpatch
import orjson

from kubeling.api import errors

Obj = dict[str, Any]
_GROUP = "admissionregistration.k8s.io"
_CONFIG_PLURALS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")


class Webhooks:
    def __init__(self, registry: Any, catalogue: Any) -> None:
        self.registry = registry
        self.catalogue = catalogue
        self._configs: dict[str, list[Obj]] | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._session: aiohttp.ClientSession | None = None
        registry.after_write.append(self._invalidate)

    async def _invalidate(self, verb: str, resource: Any, obj: Obj) -> None:
        if resource.group == _GROUP and resource.plural in _CONFIG_PLURALS:
            self._configs = None

    async def _load(self) -> dict[str, list[Obj]]:
        if self._configs is None:
            configs: dict[str, list[Obj]] = {}
            for plural in _CONFIG_PLURALS:
                res = self.catalogue.lookup(_GROUP, "v1", plural)
                page = await self.registry.store.list(self.registry.prefix(res, None)) if res else None
                configs[plural] = sorted(page.items if page else [], key=lambda o: o["metadata"]["name"])
            self._configs = configs
        return self._configs

    def known_empty(self) -> bool:
        """Whether the loaded configurations hold no webhook at all (then ``admit`` would return at
        once; most clusters have none, and every write may skip the call). False until loaded."""
        configs = self._configs
        return configs is not None and not any(configs.values())

    # ---- entry point ------------------------------------------------------------------------
    async def admit(self, operation: str, resource: Any, obj: Obj | None, old: Obj | None, *,
                    user: dict[str, Any] | None, subresource: str = "") -> None:
        if resource.group == _GROUP and resource.plural in _CONFIG_PLURALS:
            return  # upstream never calls webhooks for webhook configurations
        configs = await self._load()
        if not configs["mutatingwebhookconfigurations"] and not configs["validatingwebhookconfigurations"]:
            return
        for cfg in configs["mutatingwebhookconfigurations"]:
            for wh in cfg.get("webhooks") or []:
                if await self._matches(wh, operation, resource, obj, old, subresource):
                    await self._call(wh, operation, resource, obj, old, user, subresource, mutating=True)
        for cfg in configs["validatingwebhookconfigurations"]:
            for wh in cfg.get("webhooks") or []:
                if await self._matches(wh, operation, resource, obj, old, subresource):
                    await self._call(wh, operation, resource, obj, old, user, subresource, mutating=False)

    # ---- matching ---------------------------------------------------------------------------
    async def _matches(self, wh: Obj, operation: str, resource: Any, obj: Obj | None, old: Obj | None,
                       subresource: str) -> bool:
        exact = wh.get("matchPolicy") == "Exact"
        if not any(_rule_matches(r, operation, resource, subresource, exact=exact) for r in wh.get("rules") or []):
            return False
        from kubeling.api.selectors import label_selector_from_dict

        osel = wh.get("objectSelector")
        if osel:
            sel = label_selector_from_dict(osel)
            labels = [((o or {}).get("metadata") or {}).get("labels") or {} for o in (obj, old) if o is not None]
            if not any(sel.matches(lbl) for lbl in labels):
                return False
        nsel = wh.get("namespaceSelector")
        if nsel and (nsel.get("matchLabels") or nsel.get("matchExpressions")):
            target = obj if obj is not None else old
            meta = (target or {}).get("metadata") or {}
            if resource.group == "" and resource.plural == "namespaces":
                ns_labels = meta.get("labels") or {}
            elif not resource.namespaced:
                return True
            else:
                ns_res = self.catalogue.lookup("", "v1", "namespaces")
                ns = await self.registry.store.get(self.registry.key(ns_res, None, meta.get("namespace") or ""))
                ns_labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
            if not label_selector_from_dict(nsel).matches(ns_labels):
                return False
        return True

    # ---- calling ----------------------------------------------------------------------------
    def _ssl_context(self, ca_bundle: str | None) -> ssl.SSLContext | bool:
        key = ca_bundle or ""
        ctx = self._ssl.get(key)
        if ctx is None:
            ctx = ssl.create_default_context()
            if ca_bundle:
                ctx.load_verify_locations(cadata=base64.b64decode(ca_bundle).decode())
            self._ssl[key] = ctx
        return ctx

    async def _call(self, wh: Obj, operation: str, resource: Any, obj: Obj | None, old: Obj | None,
                    user: dict[str, Any] | None, subresource: str, *, mutating: bool) -> None:
        name = wh.get("name", "")
        cc = wh.get("clientConfig") or {}
        timeout = int(wh.get("timeoutSeconds") or 10)
        if cc.get("url"):
            url = cc["url"]
        else:
            svc = cc.get("service") or {}
            url = f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port', 443)}{svc.get('path') or ''}"
        target = obj if obj is not None else old
        meta = (target or {}).get("metadata") or {}
        uid = str(uuid.uuid4())
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        gvr = {"group": resource.group, "version": resource.version, "resource": resource.plural}
        request: Obj = {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": meta.get("name", ""), "operation": operation,
            "userInfo": {"username": (user or {}).get("username", "kubernetes-admin"),
                         "groups": (user or {}).get("groups", ["system:masters", "system:authenticated"])},
            "object": obj, "oldObject": old, "dryRun": False,
            "options": {"kind": f"{operation.capitalize()}Options", "apiVersion": "meta.k8s.io/v1"}
            if operation != "CONNECT" else None,
        }
        if subresource:
            request["subResource"] = subresource
        if resource.namespaced:
            request["namespace"] = meta.get("namespace", "")
        review = {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}
        query_url = f"{url}{'&' if '?' in url else '?'}timeout={timeout}s"
        try:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            async with self._session.post(
                    url, params={"timeout": f"{timeout}s"}, data=orjson.dumps(review),
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                    ssl=self._ssl_context(cc.get("caBundle")),
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise _CallError(f"received invalid webhook response: expected 200, got {resp.status}")
                answer = orjson.loads(body)
        except TimeoutError:
            self._failed(wh, f'failed to call webhook: Post "{query_url}": context deadline exceeded')
            return
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError, _CallError) as exc:
            self._failed(wh, f'failed to call webhook: Post "{query_url}": {_describe(exc)}')
            return
        response = (answer or {}).get("response") or {}
        if response.get("uid") not in (None, uid):
            self._failed(wh, f"expected response.uid=\"{uid}\", got \"{response.get('uid')}\"")
            return
        if not response.get("allowed"):
            st = response.get("status") or {}
            message = f'admission webhook "{name}" denied the request'
            message += f": {st['message']}" if st.get("message") else " without explanation"
            code = int(st.get("code") or 400)
            reason = st.get("reason") or ("BadRequest" if code == 400 else "Forbidden" if code == 403 else "")
            raise errors.StatusError(code, reason, message, details=st.get("details"))
        if mutating and response.get("patch") and obj is not None:
            if response.get("patchType", "JSONPatch") != "JSONPatch":
                self._failed(wh, f"unsupported patch type {response.get('patchType')!r}")
                return
            try:
                ops = orjson.loads(base64.b64decode(response["patch"]))
                patched = jsonpatch.JsonPatch(ops).apply(obj)
            except Exception as exc:  # noqa: BLE001 - a broken patch is the webhook's failure
                self._failed(wh, f"JSONPatch failed: {exc}")
                return
            obj.clear()
            obj.update(patched)

    def _failed(self, wh: Obj, why: str) -> None:
        if wh.get("failurePolicy", "Fail") == "Ignore":
            return
        raise errors.internal(f'failed calling webhook "{wh.get("name", "")}": {why}')


class _CallError(Exception):
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLError) or "certificate" in str(exc):
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"dial tcp {exc.host}:{exc.port}: connect: connection refused"
    return str(exc) or type(exc).__name__


def _rule_matches(rule: Obj, operation: str, resource: Any, subresource: str, *, exact: bool) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and resource.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if exact and "*" not in versions and resource.version not in versions:
        return False
    name = f"{resource.plural}/{subresource}" if subresource else resource.plural
    resources = rule.get("resources") or []
    ok = any(r in ("*/*", name) or (r == "*" and not subresource)
             or (bool(subresource) and (r == f"*/{subresource}" or r == f"{resource.plural}/*"))
             for r in resources)
    if not ok:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Namespaced" and not resource.namespaced:
        return False
    return not (scope == "Cluster" and resource.namespaced)
