"""The per-container shim: what keeps a detached container alive without a daemon.

``ctrstore run -d`` starts ``python -m ctrstore.runtime.shim`` in its own session. The shim
makes itself the child subreaper, creates and starts the container with the OCI runtime (the
container's stdout and stderr go to ``<bundle>/log``), tells its starter over a pipe whether
that worked, then waits for the container's init process and records how it ended in
``<bundle>/exit.json``. Commands find it again through ``<bundle>/shim.pid``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from pathlib import Path

from ctrstore._timeutil import format_rfc3339, now
from ctrstore.runtime.runc import Runc

PR_SET_CHILD_SUBREAPER = 36


def _subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def write_exit(bundle: Path, status: int) -> None:
    tmp = bundle / "exit.json.tmp"
    tmp.write_text(json.dumps({"status": status, "exited_at": format_rfc3339(now())}))
    tmp.rename(bundle / "exit.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctrstore-shim")
    p.add_argument("--runtime", required=True)
    p.add_argument("--runtime-root", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--ready-fd", type=int, required=True)
    a = p.parse_args(argv)
    bundle = Path(a.bundle)
    ready = os.fdopen(a.ready_fd, "w")
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    runc = Runc(a.runtime, Path(a.runtime_root))
    try:
        _subreaper()
        (bundle / "shim.pid").write_text(str(os.getpid()))
        (bundle / "exit.json").unlink(missing_ok=True)
        with open(bundle / "log", "ab", buffering=0) as log:
            runc.create(a.id, bundle, bundle / "init.pid", log)
        try:
            runc.start(a.id)
        except BaseException:
            runc.delete(a.id, force=True)
            raise
        init_pid = int((bundle / "init.pid").read_text())
    except BaseException as e:
        ready.write(f"error: {e}\n")
        ready.close()
        (bundle / "shim.pid").unlink(missing_ok=True)
        return 1
    ready.write("ok\n")
    ready.close()
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
    write_exit(bundle, status)
    (bundle / "shim.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
