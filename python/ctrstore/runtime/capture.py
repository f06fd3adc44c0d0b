"""A runtime command whose output is captured: ``runc run`` or ``runc exec`` with the
process's stdout and stderr as two pipes of ours, read apart.

The CLI runs containers attached to its terminal (``Runc.run_foreground``, ``Runc.exec``);
the Python API wants the output as data instead: :class:`Capture` starts the runtime with
``stdin`` from ``/dev/null`` and two pipes, and yields what arrives as ``(stream, bytes)``
chunks, in the order it is read (``"stdout"`` or ``"stderr"``), until both pipes are closed
and the process has exited. runc hands its own stdio to the container's process (no copying
in between), so the container writes straight into our pipes and the two streams stay apart.

What runc itself has to say goes to a log of this call's own (``--log /proc/self/fd/N
--log-format json``, an unlinked temporary file, as ``Runc._run`` does): if runc logged an
error (``exec: "nope": executable file not found``), the process never ran and the exit
status is runc's, not the process's; :meth:`Capture.wait` raises it as an errdefs error
instead. No signal handler is installed (the API may run in any thread); closing a capture
before the process has ended sends it SIGTERM (runc passes it on), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import IO, Literal

from ctrstore.errdefs import CtrstoreError
from ctrstore.runtime.runc import Runc, _class_of, _last_error_in, runtime_error

__all__ = ["CLOSE_TIMEOUT", "Capture", "Stream"]

Stream = Literal["stdout", "stderr"]
"""Which of the process's outputs a chunk came from."""

CLOSE_TIMEOUT = 10.0
"""Seconds :meth:`Capture.close` waits after SIGTERM before it sends SIGKILL."""

_CHUNK = 1 << 16


class Capture:
    """A runtime command started with its output captured (see the module's docstring).

    Iterate over it for ``(stream, data)`` chunks; :attr:`exit_code` is set once the process
    has ended and its output is read. :meth:`collect` reads everything and returns the exit
    status, stdout and stderr; :meth:`wait` discards what is left. Use it as a context manager
    (or call :meth:`close`) when you may stop reading early."""

    def __init__(
        self,
        runc: Runc,
        op: Literal["run", "exec"],
        args: Sequence[str],
        *,
        what: str,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        """Start ``runc <op> <args>``. ``what`` names the container in errors; ``on_exit`` is
        called once with the exit status when the process has ended (``run`` records it)."""
        self.op = op
        self.what = what
        self.exit_code: int | None = None
        """The process's exit status, once it has ended and its output has been read."""
        self._on_exit = on_exit
        runc.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        # Lives as long as the capture (closed by _finish or close).
        self._log: IO[bytes] = tempfile.TemporaryFile(dir=runc.root)  # noqa: SIM115
        fd = self._log.fileno()
        try:
            self._proc = subprocess.Popen(
                [
                    runc.binary,
                    "--root",
                    str(runc.root),
                    "--log",
                    f"/proc/self/fd/{fd}",
                    "--log-format",
                    "json",
                    op,
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(fd,),
                cwd="/",  # never keep the caller's directory (or its mount) busy
            )
        except BaseException:
            self._log.close()
            raise
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._pipes: dict[int, tuple[Stream, IO[bytes]]] = {
            self._proc.stdout.fileno(): ("stdout", self._proc.stdout),
            self._proc.stderr.fileno(): ("stderr", self._proc.stderr),
        }
        self._sel = selectors.DefaultSelector()
        for fd in self._pipes:
            self._sel.register(fd, selectors.EVENT_READ)
        self._pending: list[tuple[Stream, bytes]] = []
        self._done = False

    @property
    def pid(self) -> int:
        """The runtime process's pid (runc's, not the container process's)."""
        return self._proc.pid

    # -- reading --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[Stream, bytes]]:
        return self

    def __next__(self) -> tuple[Stream, bytes]:
        while not self._pending:
            if self._done:
                raise StopIteration
            if not self._pipes:
                self._finish()
                raise StopIteration
            for key, _ in self._sel.select():
                fd = key.fd
                data = os.read(fd, _CHUNK)
                if data:
                    self._pending.append((self._pipes[fd][0], data))
                else:
                    self._sel.unregister(fd)
                    self._pipes.pop(fd)[1].close()
        return self._pending.pop(0)

    def collect(self) -> tuple[int, bytes, bytes]:
        """Read everything: ``(exit status, stdout, stderr)``."""
        out: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        for stream, data in self:
            out[stream] += data
        assert self.exit_code is not None
        return self.exit_code, bytes(out["stdout"]), bytes(out["stderr"])

    def wait(self) -> int:
        """Read (and drop) the rest of the output; the exit status."""
        for _ in self:
            pass
        assert self.exit_code is not None
        return self.exit_code

    def _finish(self) -> None:
        """Both pipes are closed: reap the runtime, record the status, raise its error."""
        self._done = True
        self._sel.close()
        status = self._proc.wait()
        try:
            self._log.seek(0)
            logged = _last_error_in(self._log.read().decode(errors="replace").splitlines())
        finally:
            self._log.close()
        if self._on_exit is not None:
            self._on_exit(status)
        if logged:
            cls = _class_of(logged)
            raise (runtime_error(self.op, logged) if cls is None else cls(f"{self.what}: {logged}")) from None
        self.exit_code = status

    # -- stopping early -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop reading. A process still running gets SIGTERM (runc passes it on), SIGKILL
        after :data:`CLOSE_TIMEOUT` seconds; the runtime is reaped either way."""
        if self._done:
            return
        self._done = True
        self._sel.close()
        for _, f in self._pipes.values():
            f.close()
        self._pipes.clear()
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            try:
                self._proc.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        status = self._proc.wait()
        self._log.close()
        if self._on_exit is not None:
            with contextlib.suppress(CtrstoreError, OSError):
                self._on_exit(status)

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned capture: do not leave the runtime as a zombie, nor its pipes open.
        with contextlib.suppress(Exception):
            self.close()
