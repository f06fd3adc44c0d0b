"""What every command shares: the lazily opened Client, table output and progress bars.

The store is reached only through ``ctrstore.client``, imported when a command first asks for
the Client (so ``--version`` and ``--help`` load no store)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.progress import Progress

    from ctrstore.client import Client
    from ctrstore.config import Config


@dataclass
class State:
    config_path: str | None = None
    root: str | None = None
    state: str | None = None
    namespace: str | None = None
    single_id: bool = False
    _client: Client | None = field(default=None, repr=False)

    def config(self) -> Config:
        from ctrstore.config import load

        return load(self.config_path, root=self.root, state=self.state)

    def enter_userns(self) -> None:
        """An ordinary user's commands run as uid 0 in the user's namespace (made on first use,
        kept by a pause process in the state dir: ``ctrstore.rootless.userns``); root's run as
        they are (without importing the rootless code)."""
        import os

        if os.getuid() == 0:
            return
        from ctrstore.rootless.userns import enter_for

        enter_for(self.config(), single_id=True if self.single_id else None)

    def client(self) -> Client:
        if self._client is None:
            from ctrstore.client import Client

            self._client = Client(config=self.config(), namespace=self.namespace)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_state = click.make_pass_decorator(State)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def printable(value: object) -> str:
    """``str(value)`` safe to print on a terminal: control characters (escape sequences,
    newlines, bidi overrides, lone surrogates...) from stored data — names, labels, keys,
    annotations, commands — are shown as Python-style escapes (``\\x1b``, ``\\n``,
    ``\\u202e``) instead of being sent raw."""
    s = str(value)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _escape(c) for c in s)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print aligned columns, as ``ctr`` does (two spaces between columns); every cell goes
    through :func:`printable`."""
    data = [[printable(c) for c in headers], *([printable(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in data) for i in range(len(headers))]
    for r in data:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        click.echo(line)


def ago(t: datetime) -> str:
    from ctrstore._timeutil import now

    secs = int((now() - t).total_seconds())
    for unit, n in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= n:
            return f"{secs // n} {unit} ago"
    return f"{max(secs, 0)} seconds ago"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def labels_text(labels: dict[str, str]) -> str:
    return printable(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-")


def progress(enabled: bool | None = None) -> Progress:
    """A transfer progress bar on stderr; shown only when stderr is a terminal."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    show = sys.stderr.isatty() if enabled is None else enabled
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not show,
        transient=False,
    )
