"""A container's log, as docker's and nerdctl's ``json-file`` driver writes it: one JSON object
per line, ``{"log": "text\\n", "stream": "stdout"|"stderr", "time": RFC 3339 with nanoseconds}``.

Keeping the stream and the time of every line is what lets ``logs`` print stdout and stderr
apart, show ``--timestamps`` and cut by ``--since``/``--until``; the shim
(:mod:`ctrstore.runtime.shim`) writes the log of every task, attached or detached.

Lines are split at ``\\n`` as docker's copier splits them: a line is written when its newline
comes, when 16 KiB of it have piled up (a *partial* entry, its ``log`` without ``\\n``), or
when the stream ends. The bytes a container writes need not be UTF-8: they are kept exactly
(decoded with ``surrogateescape``; a line that is not UTF-8 is written with ``\\uXXXX``
escapes, and read back to the same bytes).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

from ctrstore.errdefs import InvalidArgument

__all__ = [
    "MAX_LINE",
    "LogEntry",
    "LogWriter",
    "Stream",
    "format_time",
    "parse_log_time",
    "parse_user_time",
    "read_log",
]

Stream = Literal["stdout", "stderr"]
MAX_LINE = 16 * 1024
"""Bytes of one line kept back waiting for its newline before they are written as a partial
entry (docker's copier buffer)."""


@dataclass(frozen=True)
class LogEntry:
    stream: Stream
    data: bytes
    time_ns: int
    """Nanoseconds since the epoch."""

    @property
    def time(self) -> str:
        return format_time(self.time_ns)


def format_time(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds: ``2024-05-01T12:00:00.123456789Z``."""
    secs, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})?"
)


def parse_log_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (a missing zone is UTC); InvalidArgument
    if it is not one."""
    m = _RFC3339.fullmatch(text.strip())
    if not m:
        raise InvalidArgument(f"invalid time {text!r}: want RFC 3339, e.g. 2024-05-01T12:00:00Z")
    year, month, day, hour, minute, sec, frac, zone = m.groups()
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(sec), tzinfo=UTC)
    except ValueError as e:
        raise InvalidArgument(f"invalid time {text!r}: {e}") from None
    offset = 0
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return (int(dt.timestamp()) - offset) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_user_time(text: str, now_ns: int | None = None) -> int:
    """``--since``/``--until`` as docker takes them: an RFC 3339 time (``2024-05-01``,
    ``2024-05-01T12:00:00Z``, ...), a Unix time (``1714560000[.123]``) or a duration before now
    in Go's syntax (``10m``, ``1h30m``, ``2.5s``). Nanoseconds since the epoch."""
    s = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if re.fullmatch(r"\d+(\.\d{1,9})?", s):
        whole, _, frac = s.partition(".")
        return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0") or "0")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        s += "T00:00:00Z"
    if _RFC3339.fullmatch(s):
        return parse_log_time(s)
    if s and _DURATION.sub("", s) == "":
        total = 0.0
        for num, unit in _DURATION.findall(s):
            total += float(num) * _UNITS[unit]
        return now - int(total)
    raise InvalidArgument(
        f"invalid time {text!r}: give an RFC 3339 time (2024-05-01T12:00:00Z), a Unix time, "
        "or a duration such as 10m or 1h30m"
    )


def _encode(stream: Stream, data: bytes, ns: int) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    doc = {"log": text, "stream": stream, "time": format_time(ns)}
    try:
        line = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # not UTF-8: escaped, read back by surrogateescape
        line = json.dumps(doc).encode("ascii")
    return line + b"\n"


class LogWriter:
    """Appends entries to the log at ``path``; ``write`` may be called from one thread per
    stream. Each entry is one ``write(2)`` on an ``O_APPEND`` descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._lock = threading.Lock()
        self._pending: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def _emit(self, stream: Stream, data: bytes) -> None:
        line = _encode(stream, data, time.time_ns())
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line)

    def write(self, stream: Stream, data: bytes) -> None:
        """Add what ``stream`` produced: every complete line is written, the rest kept until
        its newline (or 16 KiB of it) comes."""
        buf = self._pending[stream]
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            self._emit(stream, bytes(buf[: nl + 1]))
            del buf[: nl + 1]
        while len(buf) >= MAX_LINE:
            self._emit(stream, bytes(buf[:MAX_LINE]))
            del buf[:MAX_LINE]

    def flush(self, stream: Stream) -> None:
        """The stream ended: write what is left of its last line."""
        buf = self._pending[stream]
        if buf:
            self._emit(stream, bytes(buf))
            buf.clear()

    def close(self) -> None:
        self.flush("stdout")
        self.flush("stderr")
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _decode(line: bytes) -> LogEntry | None:
    """One whole line of the log. A line that is no entry is a log written before entries were
    (plain output, by an older ctrstore): it is shown as it is, on stdout, timeless."""
    try:
        doc = json.loads(line)
        stream = doc["stream"]
        text = doc["log"]
        if stream not in ("stdout", "stderr") or not isinstance(text, str):
            return None
        return LogEntry(stream, text.encode("utf-8", "surrogateescape"), parse_log_time(doc["time"]))
    except (ValueError, KeyError, TypeError, InvalidArgument, UnicodeEncodeError):
        return LogEntry("stdout", line + b"\n", 0)


def _entries(f: BinaryIO, follow: Callable[[], bool] | None) -> Iterator[LogEntry]:
    """Entries of the open log ``f`` (a binary file); with ``follow``, waiting for more while
    ``follow()`` says the writer may still add some. Only whole lines are read: a line being
    written is read once its newline is there."""
    rest = b""
    while True:
        chunk: bytes = f.read(1 << 16)
        if chunk:
            rest += chunk
            *lines, rest = rest.split(b"\n")
            for line in lines:
                e = _decode(line)
                if e is not None:
                    yield e
            continue
        if follow is None:
            if rest:  # a line being written: left for whoever reads on from here
                f.seek(-len(rest), os.SEEK_CUR)
            return
        if not follow():
            # One more read: what was written between the last read and the writer's end.
            chunk = f.read()
            rest += chunk
            for line in rest.split(b"\n"):
                e = _decode(line) if line else None
                if e is not None:
                    yield e
            return
        time.sleep(0.1)


def read_log(
    path: Path,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    tail: int | None = None,
    follow: Callable[[], bool] | None = None,
) -> Iterator[LogEntry]:
    """The entries of the log at ``path`` (none if there is no log): those at or after
    ``since_ns`` and before ``until_ns``, only the last ``tail`` of them, and with ``follow``
    the ones written afterwards for as long as ``follow()`` is true (polled every 0.1 s)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below, once it is open)
    except FileNotFoundError:
        return
    with f:

        def wanted(e: LogEntry) -> bool:
            return (since_ns is None or e.time_ns >= since_ns) and (until_ns is None or e.time_ns < until_ns)

        if tail is not None:
            last: deque[LogEntry] = deque(maxlen=max(tail, 0))
            for e in _entries(f, None):
                if wanted(e):
                    last.append(e)
            yield from last
            if follow is None:
                return
        for e in _entries(f, follow):
            if until_ns is not None and e.time_ns >= until_ns:
                return
            if wanted(e):
                yield e
