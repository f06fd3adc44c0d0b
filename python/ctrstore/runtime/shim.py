"""The per-container shim: what keeps a detached container alive without a daemon.

``ctrstore run -d`` starts ``python -m ctrstore.runtime.shim`` in its own session. The shim
makes itself the child subreaper, creates and starts the container with the OCI runtime (the
container's stdout and stderr go to ``<bundle>/log``), tells its starter over a pipe whether
that worked, then waits for the container's init process and records how it ended in
``<bundle>/exit.json`` (after detaching it from its CNI networks, if it has any). Commands
find it again through ``<bundle>/shim.pid``. (Every file of
the bundle is named in :mod:`ctrstore.runtime.bundle`.)

What it tells its starter is one JSON line: ``{"ok": true}``, or ``{"error": {"kind": ...,
"message": ...}}`` with the errdefs kind of the failure, which the starter raises as that
class (``errdefs.class_of_kind``).

With a terminal (``process.terminal`` in the spec, ``run -d -t``) runc hands the pty master
to the shim over a unix socket (``--console-socket``); the shim keeps it open for the
container's life and copies what the container writes to ``<bundle>/log``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from ctrstore.errdefs import CtrstoreError
from ctrstore.runtime.bundle import Bundle
from ctrstore.runtime.runc import Runc

PR_SET_CHILD_SUBREAPER = 36


def _subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _receive_master(listener: socket.socket) -> int:
    listener.settimeout(10)
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    if not fds:
        raise OSError("the runtime sent no terminal over the console socket")
    return fds[0]


def _copy_terminal(master: int, log_path: Path) -> threading.Thread:
    def copy() -> None:
        with open(log_path, "ab", buffering=0) as log:
            while True:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: every slave end is closed, the container is gone
                    break
                if not data:
                    break
                log.write(data)

    t = threading.Thread(target=copy, daemon=True)
    t.start()
    return t


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctrstore-shim")
    p.add_argument("--runtime", required=True)
    p.add_argument("--runtime-root", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--on-exit", help="JSON list: a command to run after the exit is recorded")
    a = p.parse_args(argv)
    # Daemonize: our starter reaps the parent at once, the shim is nobody's child to wait for
    # (it is reparented to init, or to the nearest subreaper).
    if os.fork() > 0:
        os._exit(0)
    bundle = Bundle(Path(a.bundle))
    ready = os.fdopen(a.ready_fd, "w")
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    runc = Runc(a.runtime, Path(a.runtime_root))
    master: int | None = None
    copier: threading.Thread | None = None
    try:
        _subreaper()
        bundle.shim_pid.write_text(str(os.getpid()))
        bundle.exit_json.unlink(missing_ok=True)
        bundle.init_pid.unlink(missing_ok=True)
        if bundle.wants_terminal():
            # A short path: a unix socket's path must fit in 108 bytes, bundles may not.
            sock_dir = Path(tempfile.mkdtemp(prefix="ctrstore-console-"))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                    listener.bind(str(sock_dir / "sock"))
                    listener.listen(1)
                    with open(bundle.log, "ab", buffering=0) as log:
                        runc.create(
                            a.id,
                            bundle.path,
                            bundle.init_pid,
                            log,
                            log_json=bundle.log_json,
                            console_socket=sock_dir / "sock",
                        )
                    master = _receive_master(listener)
            finally:
                shutil.rmtree(sock_dir, ignore_errors=True)
            copier = _copy_terminal(master, bundle.log)
        else:
            with open(bundle.log, "ab", buffering=0) as log:
                runc.create(a.id, bundle.path, bundle.init_pid, log, log_json=bundle.log_json)
        try:
            runc.start(a.id)
        except BaseException:
            runc.delete(a.id, force=True)
            raise
        init_pid = int(bundle.init_pid.read_text())
    except BaseException as e:
        with contextlib.suppress(Exception):
            runc.delete(a.id, force=True)
        _tell(ready, error_answer(e))
        bundle.shim_pid.unlink(missing_ok=True)
        return 1
    _tell(ready, {"ok": True})  # (if our starter is gone, the container still runs: keep watching it)
    status = 255
    while True:
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            break  # init was not ours to reap (it should be); report it as lost
        except InterruptedError:  # pragma: no cover
            continue
        if pid == init_pid:
            status = os.waitstatus_to_exitcode(wstatus)
            status = 128 - status if status < 0 else status
            break
    if copier is not None:
        copier.join(2)  # the rest of what the container wrote to its terminal
    _network_down(bundle)
    bundle.write_exit(status)
    bundle.shim_pid.unlink(missing_ok=True)
    if a.on_exit:
        # e.g. ``ctrstore rm`` for ``run -d --rm``; its output goes to our log (shim.log).
        subprocess.run(json.loads(a.on_exit), stdin=subprocess.DEVNULL, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
