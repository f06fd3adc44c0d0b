"""A thin wrapper around the OCI runtime's command line (runc, or crun which takes the same
commands). State lives under ``<state>/runc/<namespace>``, as containerd keeps it under
``/run/containerd/runc/<namespace>``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)

__all__ = ["Runc", "command_status", "find_runtime", "runc_error", "runtime_error"]


def find_runtime(name: str) -> str:
    """The runtime binary's path; a clear error naming what to install if it is missing."""
    path = shutil.which(name)
    if path is None:
        others = [r for r in ("runc", "crun") if r != name and shutil.which(r)]
        hint = (
            f' ({others[0]} is installed: set runtime = "{others[0]}" in config.toml)'
            if others
            else (" (install one: apt-get install runc)")
        )
        raise FailedPrecondition(f"OCI runtime {name!r} not found on PATH{hint}")
    return path


class Runc:
    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def _run(self, *args: str, what: str) -> str:
        """Run a short runc command; its stdout. On failure the error is the one runc logged
        (``--log-format json``) into a file of this call's own (an unlinked temporary file,
        handed over as ``/proc/self/fd/N``), so calls running at once never read each
        other's lines, and it is classified by runc's own error values (:func:`runc_error`)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        with tempfile.TemporaryFile(dir=self.root) as log:
            fd = log.fileno()
            r = subprocess.run(
                [
                    self.binary,
                    "--root",
                    str(self.root),
                    "--log",
                    f"/proc/self/fd/{fd}",
                    "--log-format",
                    "json",
                    *args,
                ],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                pass_fds=(fd,),
            )
            if r.returncode == 0:
                return r.stdout
            log.seek(0)
            logged = _last_error_in(log.read().decode(errors="replace").splitlines())
        if not logged:  # a runtime that logs elsewhere (or died first): its stderr
            lines = (r.stderr.strip() or r.stdout.strip()).splitlines()
            logged = lines[-1] if lines else f"exit status {r.returncode}"
        raise runc_error(f"{what}: {os.path.basename(self.binary)}", logged)

    def create(
        self,
        cid: str,
        bundle: Path,
        pid_file: Path,
        stdio: IO[bytes] | int,
        *,
        log_json: Path,
        console_socket: Path | None = None,
        stdin: int | None = None,
        stderr: int | None = None,
    ) -> None:
        """Create the container; its init process inherits ``stdio`` as stdout (and as stderr
        unless ``stderr`` is given) and ``stdin`` (default /dev/null) — so does runc itself.
        runc logs to ``log_json`` (the bundle's ``log.json``, as under containerd) and the
        error is read back from there; on failure a file ``stdio`` is cut back to where it
        was, dropping runc's copy of it. With ``console_socket`` (a terminal), runc sends the
        pty master over that unix socket."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        seekable = not isinstance(stdio, int)
        log_start = stdio.seek(0, os.SEEK_END) if not isinstance(stdio, int) else 0
        start = log_json.stat().st_size if log_json.exists() else 0
        extra = ["--console-socket", str(console_socket)] if console_socket else []
        r = subprocess.run(
            [
                self.binary,
                "--root",
                str(self.root),
                "--log",
                str(log_json),
                "--log-format",
                "json",
                "create",
                "--bundle",
                str(bundle),
                "--pid-file",
                str(pid_file),
                *extra,
                cid,
            ],
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=stdio,
            stderr=stdio if stderr is None else stderr,
        )
        if r.returncode != 0:
            # The process never ran: what was written is runc's error (also on its stderr).
            if seekable and not isinstance(stdio, int):
                os.ftruncate(stdio.fileno(), log_start)
            logged = _last_error(log_json, start) or f"exit status {r.returncode}"
            cls = _class_of(logged)
            raise (
                runtime_error("create", logged)
                if cls is None
                else cls(f"OCI runtime create failed: {logged}")
            )

    def start(self, cid: str) -> None:
        self._run("start", cid, what=f"starting container {cid}")

    def state(self, cid: str) -> dict[str, Any] | None:
        """runc's view of the container, or None if it has none (never created, deleted, or
        its state unreadable)."""
        try:
            out = self._run("state", cid, what=f"state of container {cid}")
        except CtrstoreError:
            return None
        doc: dict[str, Any] = json.loads(out)
        return doc

    def kill(self, cid: str, signal: str, *, all_processes: bool = False) -> None:
        """Signal the container's init (all its processes with ``all_processes``);
        FailedPrecondition if it is not running. Rootless, a container has no cgroup for
        ``--all`` to walk; its init is signalled, and SIGKILL to the init of its own pid
        namespace ends every process in it."""
        from ctrstore.rootless import is_rootless

        if all_processes and is_rootless():
            all_processes = False
        args = ["kill", *(["--all"] if all_processes else []), cid, signal]
        try:
            self._run(*args, what=f"signalling container {cid}")
        except FailedPrecondition:
            raise FailedPrecondition(f"container {cid} is not running") from None

    def pause(self, cid: str) -> None:
        self._run("pause", cid, what=f"pausing container {cid}")

    def resume(self, cid: str) -> None:
        self._run("resume", cid, what=f"resuming container {cid}")

    def ps(self, cid: str) -> list[int]:
        """The host pids of the container's processes."""
        out = self._run("ps", "--format", "json", cid, what=f"listing the processes of container {cid}")
        pids = json.loads(out or "[]")
        return [int(p) for p in pids or []]

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Delete the container's runtime state; nothing to do if there is none."""
        try:
            self._run("delete", *(["--force"] if force else []), cid, what=f"deleting container {cid}")
        except NotFound:
            pass

    def exec(
        self,
        cid: str,
        args: Sequence[str],
        *,
        tty: bool,
        env: Sequence[str],
        cwd: str | None,
        user: str | None,
        additional_gids: Sequence[int] = (),
        detach: bool = False,
    ) -> int:
        """``runc exec``; ``user`` is ``uid[:gid]`` (numbers: resolve names first)."""
        flags: list[str] = []
        if tty:
            flags.append("--tty")
        if detach:
            flags.append("--detach")
        for e in env:
            flags += ["--env", e]
        if cwd:
            flags += ["--cwd", cwd]
        if user:
            flags += ["--user", user]
        for g in additional_gids:
            flags += ["--additional-gids", str(g)]
        if self.state(cid) is None:
            raise NotFound(f"container {cid} has no running task")
        proc = subprocess.Popen(self.cmd("exec", *flags, cid, *args))
        return _wait_forwarding(proc)


# runc's error values (libcontainer/error.go): the message of an error runc logs ends with one
# of these when it is one of them.
_RUNC_ERRORS: tuple[tuple[str, type[CtrstoreError]], ...] = (
    ("container does not exist", NotFound),
    ("container with given ID already exists", AlreadyExists),
    ("invalid container ID format", InvalidArgument),
    ("container not running", FailedPrecondition),
    ("container still running", FailedPrecondition),
    ("container paused", FailedPrecondition),
    ("container not paused", FailedPrecondition),
)


_NOT_FOUND = ("executable file not found", "no such file or directory")
_NOT_RUNNABLE = ("permission denied", "is a directory", "exec format error", "not a directory")


def command_status(message: str) -> int | None:
    """docker's exit status for a container command the runtime could not run, from the
    runtime's message (``exec: "x": executable file not found in $PATH``): 127 when it does
    not exist, 126 when it cannot be run; None if the message is about something else."""
    if 'exec: "' not in message and "exec failed" not in message:
        return None
    low = message.lower()
    if any(t in low for t in _NOT_FOUND):
        return 127
    if any(t in low for t in _NOT_RUNNABLE):
        return 126
    return None


def _class_of(message: str) -> type[CtrstoreError] | None:
    for text, cls in _RUNC_ERRORS:
        if message == text or message.endswith(": " + text):
            return cls
    return None


def runc_error(what: str, message: str) -> CtrstoreError:
    """The errdefs error for a message runc logged: NotFound for "container does not exist",
    AlreadyExists, InvalidArgument or FailedPrecondition for runc's other error values, and
    Internal for anything else."""
    return (_class_of(message) or Internal)(f"{what}: {message}")


def runtime_error(op: str, detail: str) -> CtrstoreError:
    """An OCI runtime failure, as containerd reports it (kind "unknown"): ``OCI runtime
    create failed: unable to start container process: exec: "/nope": ...``."""
    detail = detail.removeprefix(f"runc {op} failed: ").removeprefix(f"crun {op} failed: ")
    return CtrstoreError(f"OCI runtime {op} failed: {detail}")


def _last_error_in(lines: list[str]) -> str:
    """The last error in runc's JSON log lines (``{"level": "error", "msg": ...}``); a line
    that is not JSON counts as an error message of its own."""
    found = ""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                found = line.strip()
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            found = str(entry.get("msg", ""))
    return found


def _last_error(log_json: Path, offset: int) -> str:
    """The last error runc logged into ``log_json`` after ``offset``."""
    try:
        with open(log_json, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return _last_error_in(lines)


def _wait_forwarding(proc: subprocess.Popen[bytes]) -> int:
    """Wait for a runtime child. SIGTERM and SIGHUP sent to us are passed on to it (runc
    forwards them into the container); Ctrl-C already reaches it from the terminal, so here it
    is only ignored."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            try:
                return proc.wait()
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
