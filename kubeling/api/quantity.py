"""resource.Quantity: parsing, comparison and upstream's canonical string form.

Quantities travel as strings ("100m", "1Gi", "1e3"). Upstream rejects bad ones
while decoding (400 BadRequest) and writes them back canonicalized ("1000m" ->
"1", "1024Mi" -> "1Gi"), so clients read canonical values after a create.
"""

from __future__ import annotations

import contextlib
import decimal
import functools
import re
from decimal import Decimal
from typing import Any

FORMAT_ERROR = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
NUMERIC_ERROR = "unable to parse numeric part of quantity"
SUFFIX_ERROR = "unable to parse quantity's suffix"

_SHAPE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$")
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

_CTX = decimal.Context(prec=80)
_NANO = Decimal("1e-9")


class QuantityError(ValueError):
    """A string that is not a quantity; ``str()`` is upstream's message."""


def parse(text: Any) -> tuple[Decimal, str]:
    """Return (value, format) or raise QuantityError with upstream's message."""
    if isinstance(text, bool):
        raise QuantityError(FORMAT_ERROR)
    if isinstance(text, int | float):
        text = repr(text) if isinstance(text, float) else str(text)
    if not isinstance(text, str):
        raise QuantityError(FORMAT_ERROR)
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> tuple[Decimal, str]:
    """parse() of a string, memoized: the same few quantities ("100m", "1Gi", a node's capacity) come
    back on every write of every pod and node. Only results are kept (errors are raised again)."""
    s = text.strip()
    m = _SHAPE.match(s)
    if not m:
        raise QuantityError(FORMAT_ERROR)
    num, suffix = m.group(1), m.group(2)
    if not _NUMBER.match(num):
        raise QuantityError(NUMERIC_ERROR)
    value = Decimal(num, context=_CTX)
    if suffix in _BINARY:
        value = _CTX.multiply(value, Decimal(1024) ** _BINARY[suffix])
        fmt = BINARY_SI
    elif suffix in _DECIMAL:
        value = _CTX.multiply(value, Decimal(10) ** _DECIMAL[suffix])
        fmt = DECIMAL_SI
    elif _EXPONENT.match(suffix):
        value = _CTX.multiply(value, Decimal(10) ** int(suffix[1:]))
        fmt = DECIMAL_EXPONENT
    else:
        raise QuantityError(SUFFIX_ERROR)
    # sub-nano precision rounds up, as upstream's Quantity does
    if value != value.quantize(_NANO, context=_CTX):
        value = value.quantize(_NANO, rounding=decimal.ROUND_UP, context=_CTX)
    return value, fmt


def parse_value(text: Any) -> Decimal:
    return parse(text)[0]


def is_valid(text: Any) -> bool:
    try:
        parse(text)
    except QuantityError:
        return False
    return True


def format_quantity(value: Decimal, fmt: str) -> str:
    """Upstream's CanonicalizeBytes: the largest exact suffix, integer mantissa."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    v = abs(value)
    if fmt == BINARY_SI:
        if v >= 1024 and v == v.to_integral_value():
            n = int(v)
            exp = 0
            while exp < 6 and n % 1024 == 0:
                n //= 1024
                exp += 1
            return f"{sign}{n}{_BINARY_SUFFIX[exp]}"
        fmt = DECIMAL_SI
    exp = 18
    while exp > -9:
        scaled = _CTX.divide(v, Decimal(10) ** exp)
        if scaled == scaled.to_integral_value():
            break
        exp -= 3
    mantissa = int(_CTX.divide(v, Decimal(10) ** exp).to_integral_value())
    suffix = (f"e{exp}" if exp else "") if fmt == DECIMAL_EXPONENT else _DECIMAL_SUFFIX[exp]
    return f"{sign}{mantissa}{suffix}"


def canonical(text: Any) -> str:
    value, fmt = parse(text)
    return format_quantity(value, fmt)


def compare(a: Any, b: Any) -> int:
    va, vb = parse_value(a), parse_value(b)
    return (va > vb) - (va < vb)


def milli_value(text: Any) -> int:
    """Value in thousandths, rounded up (upstream's MilliValue)."""
    return int((parse_value(text) * 1000).to_integral_value(rounding=decimal.ROUND_CEILING))


def _canon_map(m: Any) -> None:
    if not isinstance(m, dict):
        return
    for k, v in m.items():
        with contextlib.suppress(QuantityError):  # bad ones are left for validation
            m[k] = canonical(v)


def _canon_containers(spec: dict[str, Any]) -> None:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            res = c.get("resources")
            if isinstance(res, dict):
                _canon_map(res.get("limits"))
                _canon_map(res.get("requests"))
    _canon_map(spec.get("overhead"))
    res = spec.get("resources")
    if isinstance(res, dict):
        _canon_map(res.get("limits"))
        _canon_map(res.get("requests"))


def _pod_specs(kind: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    if kind == "Pod":
        return [spec]
    if kind == "PodTemplate":
        t = obj.get("template") or {}
        return [t["spec"]] if isinstance(t.get("spec"), dict) else []
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    t = spec.get("template") if isinstance(spec, dict) else None
    if isinstance(t, dict) and isinstance(t.get("spec"), dict):
        return [t["spec"]]
    return []


def canonicalize_quantities(resource: Any, obj: dict[str, Any]) -> None:
    """Rewrite quantities in place in canonical form (pod resources, node capacity, PVC sizes)."""
    if isinstance(resource, tuple):
        kind = resource[2]
    else:
        kind = resource if isinstance(resource, str) else getattr(resource, "kind", "")
    if kind == "Node":
        st = obj.get("status")
        if isinstance(st, dict):
            _canon_map(st.get("capacity"))
            _canon_map(st.get("allocatable"))
        return
    if kind == "PersistentVolumeClaim":
        spec = obj.get("spec") or {}
        res = spec.get("resources") if isinstance(spec, dict) else None
        if isinstance(res, dict):
            _canon_map(res.get("requests"))
            _canon_map(res.get("limits"))
        st = obj.get("status")
        if isinstance(st, dict):
            _canon_map(st.get("capacity"))
        return
    if kind == "PersistentVolume":
        spec = obj.get("spec")
        if isinstance(spec, dict):
            _canon_map(spec.get("capacity"))
        return
    if kind in ("ResourceQuota",):
        for part in ("spec", "status"):
            p = obj.get(part)
            if isinstance(p, dict):
                _canon_map(p.get("hard"))
                _canon_map(p.get("used"))
        return
    for spec in _pod_specs(kind, obj):
        _canon_containers(spec)
    if kind == "StatefulSet":
        for t in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
            res = ((t or {}).get("spec") or {}).get("resources")
            if isinstance(res, dict):
                _canon_map(res.get("requests"))
                _canon_map(res.get("limits"))
