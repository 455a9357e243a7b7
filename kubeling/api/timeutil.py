"""RFC3339 timestamps and upstream's short human durations.

Objects carry times as strings: metav1.Time is RFC3339 with whole seconds
("2024-05-01T10:00:00Z"), metav1.MicroTime has six fractional digits. Printed
tables show ages the way apimachinery's duration.HumanDuration does ("5s",
"3m20s", "10m", "3h4m", "2d3h", "45d", "3y"), computed on the server.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")


def now() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str | None) -> datetime | None:
    """Parse an RFC3339 string to an aware UTC datetime; None for empty or malformed input."""
    if not text or not isinstance(text, str):
        return None
    m = _RFC3339.match(text)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micros = int((frac or "0")[:6].ljust(6, "0"))
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=UTC)
    except ValueError:
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return dt


def format_rfc3339(dt: datetime) -> str:
    """metav1.Time form: UTC, whole seconds, trailing Z."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_rfc3339_micro(dt: datetime) -> str:
    """metav1.MicroTime form: UTC, six fractional digits."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return format_rfc3339(now())


def human_duration(d: timedelta | float) -> str:
    """duration.HumanDuration: coarser the older, with a 2 s tolerance for clock skew."""
    total = d.total_seconds() if isinstance(d, timedelta) else float(d)
    seconds = int(total)  # Go truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def translate_timestamp_since(text: str | None, current: datetime | None = None) -> str:
    """Age of a timestamp as printed in tables; "<unknown>" when unset."""
    dt = parse_rfc3339(text)
    if dt is None:
        return "<unknown>"
    return human_duration((current or now()) - dt)
