"""The per-container shim: the one long-lived process of a container, with no daemon.

Every task — ``run -d``, and attached ``run``/``start -a`` too — is started by a shim in its
own session: :func:`spawn` forks the starting process (``python -m ctrstore.runtime.shim`` is
the same shim as a program of its own). The shim names itself ``ctrstore-shim``, makes itself
the child subreaper,
creates and starts the container with the OCI runtime, tells its starter over a pipe whether
that worked, then waits for the container's init process and records how it ended in
``<bundle>/exit.json`` (after detaching it from its CNI networks, if it has any). Commands
find it again through ``<bundle>/shim.pid``. (Every file of
the bundle is named in :mod:`ctrstore.runtime.bundle`.)

What it tells its starter is one JSON line: ``{"ok": true}``, or ``{"error": {"kind": ...,
"message": ...}}`` with the errdefs kind of the failure, which the starter raises as that
class (``errdefs.class_of_kind``).

While the task runs the shim holds its stdio:

- **Output.** The container's stdout and stderr are pipes (with a terminal, ``-t``: the pty
  master, which runc hands over a unix socket, ``--console-socket``). The shim copies them,
  line by line with stream and time, into ``<bundle>/log`` (:mod:`ctrstore.runtime.logs`) and
  to every client attached to ``<bundle>/attach.sock`` (:mod:`ctrstore.runtime.attach`).
- **Input.** With ``--stdin`` (``-i``) the container's stdin is a pipe the shim keeps open, so
  ``attach`` can type into it later; with ``--stdin-once`` (an attached ``run -i``) it is closed
  when the client's stdin ends.
- **Attached runs.** With ``--attach-first`` the shim answers once the container is created
  and starts its process only when a client has attached (or after 10 s), so the client sees
  all of its output.
- **Restarts.** With ``--restart POLICY`` the shim is the restart manager
  (:mod:`ctrstore.runtime.restart`): it starts the process again, in the same bundle, until
  the policy says no or the user stopped the container (the bundle's ``stopping`` marker).

With the final exit the shim deletes the task's runc state (its cgroups go with it), records
``exit.json``, and only then tells attached clients, so that what they do next finds the task
stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import gc
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ctrstore._timeutil import format_rfc3339, now
from ctrstore.errdefs import CtrstoreError
from ctrstore.runtime.attach import EXIT, STDERR, STDOUT, AttachServer
from ctrstore.runtime.bundle import Bundle
from ctrstore.runtime.logs import LogWriter, Stream
from ctrstore.runtime.restart import RestartPolicy, RestartRecord, backoff, write_record
from ctrstore.runtime.runc import Runc

PR_SET_CHILD_SUBREAPER = 36
ATTACH_WAIT = 10.0
"""Seconds an ``--attach-first`` shim waits for its client before starting the process anyway."""


PR_SET_NAME = 15
PROCESS_NAME = b"ctrstore-shim"
"""The shim's name in ps and ``/proc/<pid>/comm`` (a forked shim's command line is its
starter's)."""


def _subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(PROCESS_NAME), 0, 0, 0)


def _receive_master(listener: socket.socket) -> int:
    listener.settimeout(10)
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    if not fds:
        raise OSError("the runtime sent no terminal over the console socket")
    return fds[0]


def _tell(ready: IO[str], answer: Mapping[str, object]) -> None:
    """Answer our starter: one JSON line, ``{"ok": true}`` or ``{"error": {"kind": <errdefs
    kind>, "message": ...}}`` (read back by ``ctrstore.runtime.tasks.shim_error``)."""
    with contextlib.suppress(OSError):
        ready.write(json.dumps(answer) + "\n")
        ready.flush()
    with contextlib.suppress(OSError):
        ready.close()


def error_answer(e: BaseException) -> dict[str, object]:
    """The answer for a failure: its errdefs kind ("internal" for anything unexpected) and
    message."""
    kind = e.kind if isinstance(e, CtrstoreError) else "internal"
    return {"error": {"kind": kind, "message": str(e) or type(e).__name__}}


def _network_down(bundle: Bundle) -> None:
    """Detach the exited container from its networks (``ctrstore.network.attach``), before
    its exit is recorded: once ``stop`` returns, nothing of its networking is left. A failure
    is logged (shim.log) and left to ``rm``, ``gc`` or ``check --repair``."""
    if not bundle.network_record.exists():
        return
    from ctrstore.network.attach import detach

    try:
        detach(bundle.network_record)
    except Exception as e:
        print(f"ctrstore-shim: tearing down the network: {e}", flush=True)


@dataclass
class _Run:
    """One run of the task's process: its init, its terminal (if any), and the threads
    copying its output."""

    init_pid: int = 0
    master: int | None = None
    copiers: list[threading.Thread] = field(default_factory=list)

    def finish(self) -> None:
        """Wait (a little) for the copiers to reach the end of the output, then let go of
        the terminal."""
        for t in self.copiers:
            t.join(5)
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


def _copier(
    fd: int, stream: Stream, log: LogWriter, server: AttachServer, *, close: bool
) -> threading.Thread:
    def copy() -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:  # EIO: every slave end of a terminal is closed
                    break
                if not data:
                    break
                log.write(stream, data)
                server.broadcast(STDOUT if stream == "stdout" else STDERR, data)
        finally:
            log.flush(stream)
            if close:
                with contextlib.suppress(OSError):
                    os.close(fd)

    t = threading.Thread(target=copy, daemon=True)
    t.start()
    return t


class Shim:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.id: str = a.id
        self.bundle = Bundle(Path(a.bundle))
        self.runc = Runc(a.runtime, Path(a.runtime_root))
        self.policy = RestartPolicy.parse(a.restart)
        self.tty = self.bundle.wants_terminal()
        self.log = LogWriter(self.bundle.log)
        self.run = _Run()
        self.stdin_r: int | None = None
        self.stdin_w: int | None = None
        self._stdin_lock = threading.Lock()
        self.started = threading.Event()
        """Set while the process runs: typed input waits for it (what reaches a terminal before
        the runtime has set it up may be flushed away)."""
        if a.stdin and not self.tty:
            self.stdin_r, self.stdin_w = os.pipe2(os.O_CLOEXEC)
        self.server = AttachServer(
            self.bundle.path, on_stdin=self._stdin, on_resize=self._resize, on_signal=self._signal
        )

    # -- what attached clients ask for -----------------------------------------------------------
    def _stdin(self, data: bytes) -> None:
        self.started.wait(ATTACH_WAIT)
        with self._stdin_lock:
            if self.tty and self.a.stdin:
                if data and self.run.master is not None:
                    with contextlib.suppress(OSError):
                        os.write(self.run.master, data)
                return
            if self.stdin_w is None:
                return
            if not data:
                if self.a.stdin_once:
                    os.close(self.stdin_w)
                    self.stdin_w = None
                return
            try:
                os.write(self.stdin_w, data)
            except OSError:  # nobody reads it any more
                os.close(self.stdin_w)
                self.stdin_w = None

    def _resize(self, rows: int, cols: int) -> None:
        if self.run.master is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.run.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _signal(self, name: str) -> None:
        if name.isalnum():
            with contextlib.suppress(CtrstoreError):
                self.runc.kill(self.id, name)

    # -- one run -----------------------------------------------------------------------------
    def _launch(self) -> _Run:
        """Create the container (not yet started) with its stdio wired to us."""
        b = self.bundle
        run = _Run()
        if self.tty:
            # A short path: a unix socket's path must fit in 108 bytes, bundles may not.
            sock_dir = Path(tempfile.mkdtemp(prefix="ctrstore-console-"))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                    listener.bind(str(sock_dir / "sock"))
                    listener.listen(1)
                    with open(os.devnull, "wb") as devnull:
                        self.runc.create(
                            self.id,
                            b.path,
                            b.init_pid,
                            devnull,
                            log_json=b.log_json,
                            console_socket=sock_dir / "sock",
                        )
                    run.master = _receive_master(listener)
            finally:
                shutil.rmtree(sock_dir, ignore_errors=True)
            run.copiers.append(_copier(run.master, "stdout", self.log, self.server, close=False))
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            try:
                self.runc.create(
                    self.id,
                    b.path,
                    b.init_pid,
                    out_w,
                    log_json=b.log_json,
                    stdin=self.stdin_r,
                    stderr=err_w,
                )
            except BaseException:
                for fd in (out_r, err_r):
                    os.close(fd)
                raise
            finally:
                os.close(out_w)
                os.close(err_w)
            run.copiers = [
                _copier(out_r, "stdout", self.log, self.server, close=True),
                _copier(err_r, "stderr", self.log, self.server, close=True),
            ]
        run.init_pid = int(b.init_pid.read_text())
        self.run = run
        return run

    def _start(self) -> None:
        try:
            self.runc.start(self.id)
        except BaseException:
            self.runc.delete(self.id, force=True)
            raise

    def _wait(self, init_pid: int) -> int:
        """The init's exit status (128 + signal for a signal, 255 if it was not ours to reap)."""
        while True:
            try:
                _, wstatus = os.waitpid(init_pid, 0)
            except ChildProcessError:
                return 255  # (it should be ours: runc create's orphan, and we are the subreaper)
            except InterruptedError:  # pragma: no cover
                continue
            status = os.waitstatus_to_exitcode(wstatus)
            return 128 - status if status < 0 else status

    def _oom_killed(self) -> bool:
        from ctrstore.runtime.cgroups import Cgroups, cgroups_path_of

        try:
            path = cgroups_path_of(json.loads(self.bundle.config_json.read_text()))
            return path is not None and Cgroups(path).oom_kills() > 0
        except (OSError, ValueError):
            return False

    def _stopped_by_user(self) -> bool:
        return self.bundle.stopping.exists()

    def _reap_orphans(self) -> None:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass

    # -- the whole life -----------------------------------------------------------------------
    def serve(self, tell: Callable[[Mapping[str, object]], None]) -> int:
        """Run the task (again and again, as the restart policy says); returns the last exit
        status. ``tell`` answers our starter, once. The final exit is recorded
        (``exit.json``) before attached clients hear of it, so that what they do next sees
        the task stopped."""
        told = False
        restarts = 0
        status = 255
        oom = False
        while True:
            started = time.monotonic()
            try:
                run = self._launch()
                if not told and self.a.attach_first:
                    tell({"ok": True})
                    told = True
                    self.server.wait_for_client(ATTACH_WAIT)
                self._start()
                self.started.set()
            except BaseException as e:
                with contextlib.suppress(Exception):
                    self.runc.delete(self.id, force=True)
                self.run.finish()
                if not told:
                    tell(error_answer(e))
                    return -1
                print(f"ctrstore-shim: starting {self.id} failed: {e}", file=sys.stderr, flush=True)
                _network_down(self.bundle)
                self.bundle.write_exit(status if restarts else 255, oom_killed=oom)
                self.server.broadcast(EXIT, json.dumps(error_answer(e)).encode())
                return status
            if not told:
                tell({"ok": True})
                told = True
            if restarts:
                write_record(self.bundle.restart_json, RestartRecord(restarts, False, status, _now()))
            status = self._wait(run.init_pid)
            self.started.clear()
            run.finish()
            self._reap_orphans()
            oom = self._oom_killed()
            again = self.policy.should_restart(status, restarts, stopped_by_user=self._stopped_by_user())
            if not again:
                break
            self.server.broadcast(EXIT, json.dumps({"status": status, "restarting": True}).encode())
            write_record(self.bundle.restart_json, RestartRecord(restarts, True, status, _now()))
            deadline = time.monotonic() + backoff(restarts, time.monotonic() - started)
            while time.monotonic() < deadline and not self._stopped_by_user():
                time.sleep(0.05)
            if self._stopped_by_user():
                write_record(self.bundle.restart_json, RestartRecord(restarts, False, status, _now()))
                break
            self.runc.delete(self.id, force=True)
            restarts += 1
        # Stopped for good: its runc state and cgroups go now (what start or delete would do
        # later), so that what comes next — rm, ps — has no runtime to ask.
        with contextlib.suppress(CtrstoreError):
            self.runc.delete(self.id, force=True)
        _network_down(self.bundle)
        self.bundle.write_exit(status, oom_killed=oom)
        self.server.broadcast(EXIT, json.dumps({"status": status, "restarting": False}).encode())
        return status

    def close(self) -> None:
        self.server.close()
        self.log.close()
        for fd in (self.stdin_r, self.stdin_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _now() -> str:
    return format_rfc3339(now())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ctrstore-shim")
    p.add_argument("--runtime", required=True)
    p.add_argument("--runtime-root", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--on-exit", help="JSON list: a command to run after the exit is recorded")
    p.add_argument("--restart", default="no", help="restart policy (ctrstore.runtime.restart)")
    p.add_argument("--stdin", action="store_true", help="keep the container's stdin open (-i)")
    p.add_argument("--stdin-once", action="store_true", help="close it when the first client's stdin ends")
    p.add_argument("--attach-first", action="store_true", help="start the process once a client attached")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m ctrstore.runtime.shim ARGS``: the shim as a program of its own."""
    return _daemon(parse_args(argv))


def spawn(argv: list[str], shim_log: Path) -> int:
    """Start a shim (the arguments of :func:`parse_args`) by forking this process, with no new
    interpreter to start and no modules to import again: this is what ``run`` waits for on
    every start. Returns the pid of the intermediate child, which the caller reaps at once
    (the shim itself forks again and is nobody's child).

    The child starts a session of its own in ``/``, with /dev/null as stdin and ``shim_log``
    as stdout and stderr, closes every other descriptor it inherited but the ready pipe (a
    database or lock of the caller's must not live on in it), freezes the objects it
    inherited (never collected, so no finalizer of the caller's runs in it) and leaves with
    ``os._exit``."""
    a = parse_args(argv)
    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            f.flush()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (3.12+: "multi-threaded fork")
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        gc.freeze()
        os.setsid()
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(shim_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, a.ready_fd)
        os.closerange(a.ready_fd + 1, _max_fd())
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        code = _daemon(a)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
    except (ValueError, OSError):
        return 1 << 16


def _daemon(a: argparse.Namespace) -> int:
    # Daemonize: our starter reaps the parent at once, the shim is nobody's child to wait for
    # (it is reparented to init, or to the nearest subreaper).
    if os.fork() > 0:
        os._exit(0)
    bundle = Bundle(Path(a.bundle))
    ready = os.fdopen(a.ready_fd, "w")
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    shim: Shim | None = None

    def tell(answer: Mapping[str, object]) -> None:
        if "error" in answer:
            # Never started: we record nothing, so we are no recorder from now on (what the
            # starter does next with the container, rm, must not wait for us to go).
            bundle.shim_pid.unlink(missing_ok=True)
        _tell(ready, answer)

    try:
        _subreaper()
        bundle.shim_pid.write_text(str(os.getpid()))
        bundle.exit_json.unlink(missing_ok=True)
        bundle.init_pid.unlink(missing_ok=True)
        shim = Shim(a)
        status = shim.serve(tell)
    except BaseException as e:
        with contextlib.suppress(Exception):
            Runc(a.runtime, Path(a.runtime_root)).delete(a.id, force=True)
        tell(error_answer(e))
        status = -1
    finally:
        if shim is not None:
            shim.close()
    if status < 0:  # never started: the container stays created
        bundle.shim_pid.unlink(missing_ok=True)
        return 1
    bundle.shim_pid.unlink(missing_ok=True)
    if a.on_exit:
        # e.g. ``ctrstore rm`` for ``run -d --rm``; its output goes to our log (shim.log).
        subprocess.run(json.loads(a.on_exit), stdin=subprocess.DEVNULL, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
