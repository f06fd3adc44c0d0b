"""Transfer progress as nerdctl shows it: one line per blob (``index-sha256:...``,
``manifest-...``, ``config-...``, ``layer-...``) with its state and a bar, then ``elapsed`` and
``total`` with the rate. A download names the host its bytes come from (a peer or the
registry; several when one broke off mid-blob). On a terminal the lines redraw in place, each
ending with that host; otherwise (``plain``) a line is printed each time a blob changes state
(``layer-sha256:...: done``) and when a download starts or moves to another host
(``layer-sha256:...: downloading from 10.0.0.1:5000``); ``quiet`` prints nothing."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal

from ctrstore.cli._common import human_size, printable

if TYPE_CHECKING:
    from ctrstore.images.pull import Status  # (a run that pulls nothing does not import pull)

if TYPE_CHECKING:
    from rich.console import Group
    from rich.live import Live

Mode = Literal["auto", "tty", "plain", "quiet"]
_FINAL = {"done", "exists", "mounted", "unpacked", "resolved"}
_BAR = 38


class ProgressView:
    def __init__(self, mode: Mode = "auto", file: IO[str] | None = None) -> None:
        """``file``: where to show it (default stdout; ``run`` shows its pull on stderr)."""
        self.file = file
        out = sys.stdout if file is None else file
        if mode == "auto":
            mode = "tty" if out.isatty() else "plain"
        self.mode = mode
        self.lines: dict[str, Status] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __call__(self, s: Status) -> None:
        with self._lock:
            prev = self.lines.get(s.key)
            self.lines[s.key] = s
            if self.mode == "plain":
                if s.state == "downloading":
                    if s.source and (prev is None or prev.source != s.source):
                        print(f"{s.key}: downloading from {printable(s.source)}", flush=True, file=self.file)
                elif prev is None or prev.state != s.state:
                    why = f" ({printable(s.source)})" if s.state == "retrying" and s.source else ""
                    print(f"{s.key}: {s.state}{why}", flush=True, file=self.file)
            elif self.mode == "tty" and self._live is not None:
                self._live.update(self._render())

    def _bar(self, s: Status) -> str:
        if s.state in _FINAL:
            return "+" * _BAR
        if s.total:
            n = int(_BAR * min(s.offset, s.total) / s.total)
            return "+" * n + "-" * (_BAR - n)
        return "-" * _BAR

    def _render(self) -> Group:
        from rich.console import Group
        from rich.text import Text

        width = max((len(k) for k in self.lines), default=0) + 1
        rows = [
            Text(f"{k + ':':<{width}} {s.state:<14} |{self._bar(s)}|{_from(s)}")
            for k, s in self.lines.items()
        ]
        rows.append(Text(self._summary(width)))
        return Group(*rows)

    def _summary(self, width: int = 0) -> str:
        elapsed = time.monotonic() - self.started
        total = sum(s.total for k, s in self.lines.items() if s.state == "done" and "-sha256:" in k)
        rate = total / elapsed if elapsed > 0 else 0
        left = f"elapsed: {elapsed:.1f} s"
        return f"{left:<{width + 16}} total: {human_size(total)} ({human_size(int(rate))}/s)"

    def __enter__(self) -> ProgressView:
        if self.mode == "tty":
            # rich is loaded only for the live display: plain and quiet runs start faster.
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._render(),
                console=Console(highlight=False, file=self.file),
                refresh_per_second=8,
                transient=False,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
        elif self.mode == "plain":
            print(self._summary(), flush=True, file=self.file)


def _from(s: Status) -> str:
    """`` from <host>`` for a line whose bytes came from somewhere, `` (<why>)`` for a retry
    (escaped: hosts come from hosts.toml, a retry's reason from a server)."""
    if not s.source or s.state not in ("downloading", "done", "retrying"):
        return ""
    text = printable(s.source)
    return f" ({text})" if s.state == "retrying" else f" from {text}"
