"""Typed keys for what the middlewares and handlers keep on a request (aiohttp's RequestKey; the
in-process loopback's requests are plain dicts and take the same keys)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

USER: web.RequestKey[dict[str, Any]] = web.RequestKey("user", dict)  # the authenticated user
RESOURCE: web.RequestKey[Any] = web.RequestKey("resource")  # the catalogue row being served
INFO: web.RequestKey[Any] = web.RequestKey("info")  # the parsed RequestInfo
