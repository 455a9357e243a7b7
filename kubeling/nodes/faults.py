"""Fault injection declared on API objects, so tests and users drive failures with kubectl alone.

Node annotations:
  kubeling.io/fail-images: "<glob>,<glob>"   matching images never pull (ErrImagePull, ImagePullBackOff)
  kubeling.io/crash-images: "<glob>,..."     matching containers start and exit 1 (CrashLoopBackOff)
  kubeling.io/pull-delay: "2s"               image pulls take that long
  kubeling.io/simulate: "unreachable"        heartbeats stop (node lease and status)
                        "not-ready"          Ready=False
                        "memory-pressure" | "disk-pressure" | "pid-pressure"  that condition True
                        (several may be given, comma separated; removing the annotation heals)
Pod annotations:
  kubeling.io/ready-after: "5s"              containers turn Ready only that long after starting
  kubeling.io/stop-after: "10s"              the container takes that long to stop (capped by the grace period)
Image tags starting with ``broken`` fail to pull and tags starting with ``crash`` crash, on every node.
Globs match the image as written in the pod and its normalized form (docker.io/library/nginx:1.25).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from typing import Any

FAIL_IMAGES = "kubeling.io/fail-images"
CRASH_IMAGES = "kubeling.io/crash-images"
SIMULATE = "kubeling.io/simulate"
SIMULATIONS = ("unreachable", "not-ready", "memory-pressure", "disk-pressure", "pid-pressure")

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """A Go duration ("1m30s", "500ms") or plain seconds ("5") in seconds; None if absent or bad."""
    if text is None:
        return None
    if type(text) is str:  # annotation values: the same few texts on every sync
        return _parse_duration(text)
    return _parse_duration(str(text))


@functools.lru_cache(maxsize=1024)
def _parse_duration(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


def _annotations(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


# Parsed annotations are memoized by their text: every pod and node sync reads them, they rarely
# change, and a changed annotation is a new key (nothing to invalidate).
@functools.lru_cache(maxsize=1024)
def _globs(text: str | None) -> tuple[str, ...]:
    return tuple(g.strip() for g in (text or "").split(",") if g.strip())


@functools.lru_cache(maxsize=256)
def _simulations(text: str | None) -> frozenset[str]:
    return frozenset(_globs(text))


def node_simulations(node: dict[str, Any] | None) -> frozenset[str]:
    return _simulations(_annotations(node).get(SIMULATE))


def node_fail_globs(node: dict[str, Any] | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The node's fail globs; the fleet-wide ones (``--fail-images``) apply where the node has none."""
    own = _annotations(node).get(FAIL_IMAGES)
    return _globs(own) if own is not None else tuple(default)


def node_crash_globs(node: dict[str, Any] | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    own = _annotations(node).get(CRASH_IMAGES)
    return _globs(own) if own is not None else tuple(default)


def fail_images(node: dict[str, Any] | None, default: tuple[str, ...] = ()) -> list[str]:
    """The node's fail globs; the fleet-wide ones (``--fail-images``) apply where the node has none."""
    return list(node_fail_globs(node, default))


def crash_images(node: dict[str, Any] | None, default: tuple[str, ...] = ()) -> list[str]:
    return list(node_crash_globs(node, default))


def image_tag(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def image_matches(image: str, globs: list[str] | tuple[str, ...], *, default_tag_prefix: str = "") -> bool:
    return _image_matches(image, tuple(globs), default_tag_prefix)


@functools.lru_cache(maxsize=4096)
def _image_matches(image: str, globs: tuple[str, ...], default_tag_prefix: str) -> bool:
    if default_tag_prefix and image_tag(image).startswith(default_tag_prefix):
        return True
    if not globs:
        return False
    from kubeling.nodes.stages import normalize_image  # stages imports this module
    forms = (image, normalize_image(image))
    return any(fnmatch.fnmatchcase(f, g) for g in globs for f in forms)
