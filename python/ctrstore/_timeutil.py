"""Timestamps as containerd writes them: RFC 3339 in UTC, with up to nanoseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d+)")


def now() -> datetime:
    return datetime.now(UTC)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 time, keeping microseconds of a nanosecond fraction."""
    s = text.strip().replace("Z", "+00:00")
    s = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), s, count=1)
    return datetime.fromisoformat(s).astimezone(UTC)


def format_rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
