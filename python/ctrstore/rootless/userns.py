"""The user's namespace and its pause process (podman's ``rootless`` package, in Python).

``enter(state)`` makes this process uid 0 in the user's user namespace and its mount
namespace. The namespaces belong to a pause process recorded in ``<state>/pause.pid``: a fork
of the first command that needed them, which unshared both, had ``newuidmap``/``newgidmap``
write its id maps (0 → the user, 1..N → the subids) and then sleeps until killed. Later
commands join its namespaces with setns(2), so mounts made by one command (a running
container's rootfs) are there for the next. ``<state>/pause.lock`` serialises making it.
The pause process execs coreutils' ``sleep infinity`` (argv[0] ``ctrstore-pause``) so that
it holds the namespaces in a megabyte rather than a whole interpreter's memory.
Killing the pause process (``kill $(cut -d' ' -f1 <state>/pause.pid)``: the file holds its pid
and start time) drops the namespace once no
container uses it; the next command makes a new one.

Single-id mode (a user with no subids, or ``single_id=True``: ``--single-id``,
``CTRSTORE_SINGLE_ID=1``): the namespace maps only 0 → the user, written by this process
itself (``setgroups`` denied first, as the kernel asks of an unprivileged writer), with no
newuidmap. A one-line warning says so when the namespace is made (``idmap.single_id_warning``).
Asking for one mode while the pause process runs with the other is an error that names it.

setns(CLONE_NEWUSER) needs a single-threaded process: the CLI enters before it opens a store
(``cli/__init__.py``), ``ctrstore.Client`` when it is made (``enter_for``); a process that
already runs threads gets ``Unavailable`` saying to make the Client first or to run under
``ctrstore unshare python ...``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from ctrstore.errdefs import FailedPrecondition, Unavailable
from ctrstore.rootless import ROOTLESS_UID_ENV, SINGLE_ID_ENV, in_userns, maps_single_id
from ctrstore.rootless.subids import SUBGID, SUBUID, IdRange, ranges, require, user_name
from ctrstore.runtime._proc import process_start_time

if TYPE_CHECKING:
    from ctrstore.config import Config

__all__ = ["PAUSE_PID", "enter", "enter_for", "pause_is_single_id", "pause_pid"]

PAUSE_PID = "pause.pid"
PAUSE_LOCK = "pause.lock"
PAUSE_NAME = "ctrstore-pause"
"""The pause process's ``argv[0]`` (what ``ps`` shows)."""
SLEEP_PROGRAMS = ("/usr/bin/sleep", "/bin/sleep")
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
PR_SET_NAME = 15

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def pause_pid(state: str | os.PathLike[str]) -> int | None:
    """The pause process recorded in ``state``, if it still runs (same pid and start time, and
    not a zombie its parent has yet to reap)."""
    try:
        pid_s, start = (Path(state) / PAUSE_PID).read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if process_start_time(pid) == start else None


def pause_is_single_id(pid: int) -> bool:
    """Whether pause process ``pid``'s namespace maps a single id."""
    try:
        return maps_single_id(Path(f"/proc/{pid}/uid_map").read_text())
    except OSError:
        return False


def _wants_single_id(name: str, uid: int, single_id: bool | None) -> tuple[bool, bool]:
    """(single-id mode, whether it was asked for rather than chosen for want of subids)."""
    if single_id is None:
        single_id = os.environ.get(SINGLE_ID_ENV, "") not in ("", "0")
    if single_id:
        return True, True
    return not (ranges(SUBUID, name, uid) and ranges(SUBGID, name, uid)), False


def enter(state: str | os.PathLike[str], single_id: bool | None = None) -> None:
    """Become uid 0 in the user's namespaces (made on first use). Nothing for root, or for a
    process already inside (``ctrstore unshare ctrstore ...``). ``single_id`` (default: env
    ``CTRSTORE_SINGLE_ID``) asks for a single-id namespace even where the user has subids;
    a user without subids gets one anyway."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0 and (ROOTLESS_UID_ENV in os.environ or in_userns() or os.geteuid() == 0):
        return
    name = user_name(uid)
    single, asked = _wants_single_id(name, uid, single_id)
    state_dir = Path(state)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(state_dir / PAUSE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pid = pause_pid(state_dir)
        if pid is not None and pause_is_single_id(pid) != single:
            raise FailedPrecondition(_other_mapping(pid, single, asked))
        if pid is None:
            if single:
                pid = _start_pause(uid, gid, None, None)
            else:
                subuid, subgid = require(name, uid, gid)
                pid = _start_pause(uid, gid, subuid, subgid)
            tmp = state_dir / f"{PAUSE_PID}.tmp"
            tmp.write_text(f"{pid} {process_start_time(pid)}\n")
            tmp.replace(state_dir / PAUSE_PID)
            if single:
                from ctrstore.rootless import warn
                from ctrstore.rootless.idmap import single_id_warning

                warn(single_id_warning(name, asked))
    _join(pid)
    os.environ[ROOTLESS_UID_ENV] = str(uid)


def _sleep_program() -> str | None:
    """coreutils' ``sleep``, which the pause process becomes: it sleeps forever in about a
    megabyte, where the fork of the command that made the namespace keeps the whole
    interpreter's memory (podman's pause process is its small C program ``catatonit -P``)."""
    return next((p for p in SLEEP_PROGRAMS if os.access(p, os.X_OK)), None)


def enter_for(config: Config, single_id: bool | None = None) -> None:
    """What every entry point of an ordinary user does first — the CLI before it runs a
    command, ``ctrstore.Client`` before it opens the store: become uid 0 in the user's
    namespaces, kept by the pause process in ``config.state`` (``single_id`` as ``enter``
    takes it), then check the id mapping the store was unpacked with (``idmap.check_store``).
    A state dir of the XDG default under /tmp (no ``XDG_RUNTIME_DIR``) must be this user's
    own 0700 directory, not one another user made first. Nothing for root or for a process
    already inside."""
    if os.getuid() == 0:
        return
    from ctrstore.config import private_dir, user_defaults
    from ctrstore.rootless.idmap import check_store

    if config.state == user_defaults().state and config.state.startswith("/tmp/"):
        private_dir(config.state)
    enter(config.state, single_id=single_id)
    check_store(config.root)


def _other_mapping(pid: int, single: bool, asked: bool) -> str:
    """Why a command cannot join pause process ``pid``: its namespace has the other mapping."""
    has = "a single id (0 -> you only)" if not single else "your subordinate ids"
    if single and asked:
        want = "--single-id (or CTRSTORE_SINGLE_ID=1) asks for a single-id namespace"
    elif single:
        want = "you have no subordinate ids now (a single-id namespace)"
    else:
        want = "you have subordinate ids and did not ask for --single-id"
    return (
        f"the user namespace of pause process {pid} maps {has}, but {want}: the two cannot "
        f"be mixed; stop it first (kill {pid}; containers still running "
        "keep it until they stop) and run the command again"
    )


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _join(pid: int) -> None:
    if _threads() != 1:
        raise Unavailable(
            "cannot enter the user namespace of an ordinary user's store: this process already runs "
            f"{_threads() - 1} other thread(s) (setns(2) needs a single-threaded process); make the "
            "ctrstore.Client before starting threads, or run the program under `ctrstore unshare`"
        )
    cwd = os.getcwd()
    user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    mnt_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(user_fd, CLONE_NEWUSER), f"joining the user namespace of pause process {pid}")
        _check(_libc.setns(mnt_fd, CLONE_NEWNS), f"joining the mount namespace of pause process {pid}")
    finally:
        os.close(user_fd)
        os.close(mnt_fd)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    try:
        os.setgroups([])
    except OSError:
        pass  # setgroups denied in this namespace: keep the (unmapped) groups
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")


def _newidmap(tool: str, pid: int, own: int, sub: IdRange) -> None:
    path = shutil.which(tool)
    if path is None:
        raise FailedPrecondition(
            f"{tool} is not installed: install Debian's uidmap package (apt-get install uidmap)"
        )
    args = [path, str(pid), "0", str(own), "1", "1", str(sub.start), str(sub.count)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0:
        raise FailedPrecondition(f"{tool} {' '.join(args[1:])} failed: {r.stderr.strip() or r.returncode}")


def _write_single_maps(pid: int, uid: int, gid: int) -> None:
    """Single-id mode: map 0 to the user (and their group) in ``pid``'s new namespace. An
    unprivileged process may write one line mapping its own ids, gid_map only once setgroups
    is denied (user_namespaces(7))."""
    try:
        Path(f"/proc/{pid}/uid_map").write_text(f"0 {uid} 1\n")
        Path(f"/proc/{pid}/setgroups").write_text("deny\n")
        Path(f"/proc/{pid}/gid_map").write_text(f"0 {gid} 1\n")
    except OSError as e:
        raise FailedPrecondition(f"cannot write the single-id map of pause process {pid}: {e}") from None


def _start_pause(uid: int, gid: int, subuid: IdRange | None, subgid: IdRange | None) -> int:
    """Fork the pause process: it unshares a user and a mount namespace, waits for its maps
    (newuidmap/newgidmap with the subids; without, the single-id map written here), then
    sleeps in a session of its own with no descriptors open, until SIGTERM or SIGKILL."""
    unshared_r, unshared_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the pause process
        try:
            os.close(unshared_r)
            os.close(mapped_w)
            ok = _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0
            os.write(unshared_w, b"1" if ok else b"0")
            if not ok or os.read(mapped_r, 1) != b"1":
                os._exit(1)
            os.setsid()
            os.chdir("/")
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 65536)
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_IGN)  # ignored signals stay ignored across exec
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            sleep = _sleep_program()
            if sleep is not None:  # a small program holds the namespaces, not a copy of Python
                with suppress(OSError):
                    os.execv(sleep, [PAUSE_NAME, "infinity"])
            _libc.prctl(PR_SET_NAME, PAUSE_NAME.encode(), 0, 0, 0)
            while True:
                signal.pause()
        finally:
            os._exit(1)
    os.close(unshared_w)
    os.close(mapped_r)
    try:
        if os.read(unshared_r, 1) != b"1":
            os.waitpid(pid, 0)
            raise FailedPrecondition(
                "cannot create a user namespace (unshare(CLONE_NEWUSER) failed): check "
                "/proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone"
            )
        try:
            if subuid is None or subgid is None:
                _write_single_maps(pid, uid, gid)
            else:
                _newidmap("newuidmap", pid, uid, subuid)
                _newidmap("newgidmap", pid, gid, subgid)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        os.write(mapped_w, b"1")
    finally:
        os.close(unshared_r)
        os.close(mapped_w)
    return pid
