"""Restart policies, as docker's ``--restart``: ``no``, ``on-failure[:N]``, ``always``,
``unless-stopped``.

With no daemon, the shim that keeps a detached task (:mod:`ctrstore.runtime.shim`) is the
restart manager: when the task's process exits it asks :meth:`RestartPolicy.should_restart`,
waits :func:`backoff`, and starts the process again in the same bundle, on the same snapshot.
A container stopped by the user (``stop``, ``kill`` with SIGKILL or its stop signal, ``rm -f``:
the bundle's ``stopping`` marker) is not restarted, whatever its policy. ``always`` and
``unless-stopped`` differ in docker only when its daemon starts again; ctrstore has no daemon
to start containers at boot, so they behave alike here.

What the shim records (``<bundle>/restart.json``): ``{"count": N, "restarting": bool,
"last_exit": status, "at": RFC 3339}``; ``ps`` shows ``Restarting (status)`` while it waits,
``inspect`` the count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctrstore.errdefs import InvalidArgument

__all__ = ["POLICIES", "RestartPolicy", "RestartRecord", "backoff", "read_record", "write_record"]

POLICIES = ("no", "on-failure", "always", "unless-stopped")


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    max_retries: int = 0
    """on-failure only: at most this many restarts (0: no limit)."""

    @classmethod
    def parse(cls, text: str | None) -> RestartPolicy:
        """``no`` (also empty), ``always``, ``unless-stopped``, ``on-failure`` or
        ``on-failure:N``; InvalidArgument naming what is wrong otherwise."""
        if not text:
            return cls()
        name, sep, count = text.partition(":")
        if name not in POLICIES:
            raise InvalidArgument(
                f"invalid restart policy {text!r}: use no, on-failure[:max-retries], always or unless-stopped"
            )
        if not sep:
            return cls(name)
        if name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {text!r}: only on-failure takes a retry count")
        if not count.isdigit():
            raise InvalidArgument(f"invalid restart policy {text!r}: the retry count must be a number >= 0")
        return cls(name, int(count))

    def __str__(self) -> str:
        return (
            f"{self.name}:{self.max_retries}" if self.name == "on-failure" and self.max_retries else self.name
        )

    @property
    def restarts(self) -> bool:
        return self.name != "no"

    def should_restart(self, status: int, restarts: int, *, stopped_by_user: bool) -> bool:
        """Whether a task that exited with ``status`` after ``restarts`` restarts runs again."""
        if stopped_by_user or self.name == "no":
            return False
        if self.name == "on-failure":
            return status != 0 and (self.max_retries == 0 or restarts < self.max_retries)
        return True


def backoff(restarts: int, ran_for: float) -> float:
    """Seconds to wait before restart number ``restarts + 1``: docker's 100 ms doubling up to a
    minute, back to 100 ms after a run of 10 s or more."""
    if ran_for >= 10:
        return 0.1
    return float(min(0.1 * (2 ** min(restarts, 10)), 60.0))


@dataclass(frozen=True)
class RestartRecord:
    count: int = 0
    restarting: bool = False
    last_exit: int | None = None
    at: str | None = None


def read_record(path: Path) -> RestartRecord:
    try:
        doc: Any = json.loads(path.read_text())
        return RestartRecord(
            int(doc["count"]),
            bool(doc["restarting"]),
            None if doc.get("last_exit") is None else int(doc["last_exit"]),
            doc.get("at"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return RestartRecord()


def write_record(path: Path, record: RestartRecord) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "count": record.count,
                "restarting": record.restarting,
                "last_exit": record.last_exit,
                "at": record.at,
            }
        )
    )
    tmp.rename(path)
