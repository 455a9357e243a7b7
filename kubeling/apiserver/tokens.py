"""ServiceAccount tokens: the TokenRequest subresource (`kubectl create token`) and their authentication.

As upstream's bound service account tokens, an issued token is a JWT (RS256) whose claims name the
ServiceAccount (and its uid), the audiences and the expiry; nothing per token is stored. What makes
tokens survive a restart, and work on every API server sharing a store, is the signing key: one
RSA key kept in the store itself (under ``/registry/kubeling.io/signingkeys/service-account``, a key
no API resource serves), created by whichever API server needs it first. A token authenticates as
``system:serviceaccount:<ns>:<name>`` (groups system:serviceaccounts,
system:serviceaccounts:<ns>, system:authenticated) until it expires, and only while a
ServiceAccount of that name and uid exists: deleting the account revokes its tokens, as upstream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kubeling.api import errors
from kubeling.api.catalogue import Resource
from kubeling.api.timeutil import format_rfc3339
from kubeling.apiserver import encoding
from kubeling.apiserver.requestinfo import RequestInfo
from kubeling.storage import KeyExists

if TYPE_CHECKING:
    from kubeling.apiserver.server import ApiServer

ISSUER = "https://kubernetes.default.svc.cluster.local"  # upstream's default --service-account-issuer
KEY_PATH = "/registry/kubeling.io/signingkeys/service-account"
DEFAULT_EXPIRATION = 3600  # TokenRequestSpec.expirationSeconds default
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
_CACHE_LIMIT = 10_000

Obj = dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sa_user(namespace: str, name: str, uid: str) -> dict[str, Any]:
    """The user a ServiceAccount token authenticates as (upstream's serviceaccount.UserInfo)."""
    return {"name": f"system:serviceaccount:{namespace}:{name}", "uid": uid,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]}


class ServiceAccountTokens:
    """Issues and verifies ServiceAccount JWTs with the store's signing key."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self._key: rsa.RSAPrivateKey | None = None
        self._kid = ""
        self._lock = asyncio.Lock()
        # token -> (expiry, its account's storage key, the account's uid, the user): a hot client's
        # token is verified once, then costs a dict look-up and the account's read
        self._verified: dict[str, tuple[int, str, str, dict[str, Any]]] = {}

    # ---- the signing key --------------------------------------------------------------------
    async def _signing_key(self) -> rsa.RSAPrivateKey:
        if self._key is not None:
            return self._key
        async with self._lock:
            if self._key is None:
                store = self.server.store
                obj = await store.get(KEY_PATH)
                if obj is None:
                    key = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
                    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
                    doc = {"apiVersion": "v1", "kind": "Secret", "type": "kubeling.io/signing-key",
                           "metadata": {"name": "service-account", "uid": str(uuid.uuid4())},
                           "data": {"key.pem": base64.b64encode(pem).decode()}}
                    try:
                        obj = await store.create(KEY_PATH, doc)
                    except KeyExists:  # another API server won the race: use its key
                        obj = await store.get(KEY_PATH)
                assert obj is not None
                loaded = serialization.load_pem_private_key(base64.b64decode(obj["data"]["key.pem"]), None)
                assert isinstance(loaded, rsa.RSAPrivateKey)
                public = loaded.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
                self._kid = _b64(hashlib.sha256(public).digest())  # upstream's key id: hash of the public key
                self._key = loaded
        return self._key

    # ---- issuing ----------------------------------------------------------------------------
    async def issue(self, sa: Obj, *, expiration_seconds: int, audiences: list[str],
                    bound: Obj | None = None, now: float | None = None) -> tuple[str, int]:
        """A signed token for ServiceAccount ``sa``; returns (token, expiry as a Unix time)."""
        key = await self._signing_key()
        iat = int(now if now is not None else time.time())
        exp = iat + expiration_seconds
        meta = sa["metadata"]
        private: Obj = {"namespace": meta["namespace"],
                        "serviceaccount": {"name": meta["name"], "uid": meta["uid"]}}
        if bound:
            private[bound["kind"].lower()] = {"name": bound["name"], "uid": bound.get("uid", "")}
        claims = {"aud": audiences, "exp": exp, "iat": iat, "iss": ISSUER, "jti": str(uuid.uuid4()),
                  "kubernetes.io": private, "nbf": iat,
                  "sub": f"system:serviceaccount:{meta['namespace']}:{meta['name']}"}
        header = {"alg": "RS256", "kid": self._kid}
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}", exp

    # ---- authenticating ---------------------------------------------------------------------
    async def authenticate(self, token: str) -> dict[str, Any] | None:
        """The ServiceAccount user for a valid, unexpired token whose account still exists; else None."""
        if token.count(".") != 2:
            return None
        known = self._verified.get(token)
        if known is None:
            claims = await self._verify(token)
            if claims is None:
                return None
            private = claims["kubernetes.io"]
            ns, name = private["namespace"], private["serviceaccount"]["name"]
            uid = private["serviceaccount"]["uid"]
            # what every later request with this token needs: expiry, the account's key and uid, the user
            known = (claims["exp"], f"/registry/serviceaccounts/{ns}/{name}", uid, sa_user(ns, name, uid))
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = known
        exp, key, uid, user = known
        if exp <= time.time():
            self._verified.pop(token, None)
            return None
        sa = await self.server.store.get(key)  # deleting (or recreating) the account revokes its tokens
        if sa is None or sa["metadata"].get("uid") != uid or sa["metadata"].get("deletionTimestamp"):
            return None
        return user

    async def _verify(self, token: str) -> Obj | None:
        try:
            head, body, sig = token.split(".")
            header = orjson.loads(_unb64(head))
            if header.get("alg") != "RS256":
                return None
            key = await self._signing_key()
            key.public_key().verify(_unb64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
            claims = orjson.loads(_unb64(body))
        except (ValueError, InvalidSignature, orjson.JSONDecodeError):
            return None
        private = claims.get("kubernetes.io") if isinstance(claims, dict) else None
        if (claims.get("iss") != ISSUER or not isinstance(claims.get("exp"), int) or not isinstance(private, dict)
                or not isinstance(private.get("serviceaccount"), dict)):
            return None
        return claims

    # ---- POST .../serviceaccounts/{name}/token -----------------------------------------------
    async def handle(self, request: web.Request, res: Resource, info: RequestInfo) -> web.Response:
        if request.method != "POST":
            raise errors.method_not_allowed()
        assert info.namespace is not None and info.name is not None
        body = encoding.decode_body(await request.read(), request.headers.get("Content-Type", "application/json"))
        if not isinstance(body, dict) or body.get("kind", "TokenRequest") != "TokenRequest":
            raise errors.bad_request("the body of a serviceaccounts/token request must be a TokenRequest")
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_EXPIRATION if seconds is None else seconds
        field_errors = []
        if not isinstance(seconds, int) or seconds < MIN_EXPIRATION:
            field_errors.append(errors.invalid("spec.expirationSeconds", seconds,
                                               "may not specify a duration less than 10 minutes"))
        elif seconds > MAX_EXPIRATION:
            field_errors.append(errors.invalid("spec.expirationSeconds", seconds,
                                               "may not specify a duration larger than 2^32 seconds"))
        if field_errors:
            raise errors.invalid_error("authentication.k8s.io", "TokenRequest", "", field_errors)
        sa = await self.server.registry.get(res, info.namespace, info.name)
        audiences = list(spec.get("audiences") or [ISSUER])
        bound = spec.get("boundObjectRef") or None
        if bound:
            bound = await self._bound_object(info.namespace, bound)
        token, exp = await self.issue(sa, expiration_seconds=seconds, audiences=audiences, bound=bound)
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": info.name, "namespace": info.namespace,
                            "creationTimestamp": format_rfc3339(datetime.now(UTC))},
               "spec": {"audiences": audiences, "expirationSeconds": seconds,
                        "boundObjectRef": spec.get("boundObjectRef")},
               "status": {"token": token, "expirationTimestamp": format_rfc3339(datetime.fromtimestamp(exp, UTC))}}
        return web.Response(body=orjson.dumps(out), status=201, content_type="application/json")

    async def _bound_object(self, namespace: str, ref: Obj) -> Obj:
        """The boundObjectRef with the uid of the live Pod, Secret or Node it names."""
        plural = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}.get(ref.get("kind", ""))
        if plural is None or ref.get("apiVersion", "v1") != "v1":
            raise errors.invalid_error("authentication.k8s.io", "TokenRequest", "", [errors.unsupported(
                "spec.boundObjectRef.kind", ref.get("kind"), ["Pod", "Secret", "Node"])])
        res = self.server.catalogue.lookup("", "v1", plural)
        assert res is not None
        obj = await self.server.registry.get(res, None if plural == "nodes" else namespace, ref.get("name", ""))
        uid = obj["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict("", plural, ref.get("name", ""),
                                  f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                                  f"in record. The object might have been deleted and then recreated")
        return {**ref, "uid": uid}


def install(server: ApiServer) -> ServiceAccountTokens:
    """Serve serviceaccounts/token on ``server``; its auth middleware asks the result about JWTs."""
    tokens = ServiceAccountTokens(server)
    server.handlers.register_subresource(
        "token", tokens.handle, applies_to=lambda r: r.group == "" and r.plural == "serviceaccounts")
    return tokens
