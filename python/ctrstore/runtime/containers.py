"""Containers and their tasks, with no daemon: the seed's ``run``.

Creating a container prepares one more, writable snapshot keyed by the container id on top of
the image's chainID, records the container in meta.db, writes the bundle
``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`` (``config.json``, and ``rootfs/``
with the overlay mounted: lowerdir = the image's layers newest first, upperdir/workdir = the
container's snapshot) and generates the OCI spec. Starting it runs the OCI runtime: attached
(``runc run``) or detached, through the shim (``ctrstore.runtime.shim``). Whatever the
container writes lands in its snapshot's ``fs``.

Every step is undone if a later one fails: no mount, snapshot, bundle or record is left
behind. After a reboot or a killed shim, the container shows as stopped (exit status 255)
and ``delete`` still cleans up; ``start`` mounts the rootfs again (and makes the bundle again
from the record if /run was emptied).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ctrstore.content import Descriptor
from ctrstore.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
    class_of_kind,
)
from ctrstore.images import manifest_for, read_config
from ctrstore.metadata.containers import Container
from ctrstore.mount import is_mountpoint, mount_all, mountinfo, unmount
from ctrstore.runtime.runc import Runc, find_runtime
from ctrstore.runtime.shim import write_exit
from ctrstore.runtime.spec import SpecOptions, generate, resolve_user, validate_container_id

if TYPE_CHECKING:
    from ctrstore.client import Client

__all__ = ["TASK_PLUGIN", "ContainerManager", "TaskStatus"]

TASK_PLUGIN = "io.containerd.runtime.v2.task"
RUNTIME_NAME = "io.containerd.runc.v2"
LOST_EXIT_STATUS = 255
"""The exit status of a task whose shim died without recording one (containerd's too)."""
_RECORDERS = ("shim.pid", "attach.pid")
"""Files naming the process that records the task's exit: the shim of a detached task, the
``run`` process of an attached one."""


@dataclass(frozen=True)
class TaskStatus:
    status: str
    """created (never started, or its start failed), running, paused, stopped, or unknown
    (no bundle: /run was emptied by a reboot). A task whose shim died without recording an
    exit status (killed, or a reboot) is stopped with 255, as containerd reports it."""
    pid: int = 0
    exit_status: int | None = None
    exited_at: str | None = None


class ContainerManager:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.namespace = client.namespace
        self.store = client.metadata.containers(client.namespace)

    # -- places ----------------------------------------------------------------------------
    def bundle(self, cid: str) -> Path:
        return self.client.state / TASK_PLUGIN / self.namespace / cid

    def work(self, cid: str) -> Path:
        return self.client.root / TASK_PLUGIN / self.namespace / cid

    def runc(self) -> Runc:
        return Runc(find_runtime(self.client.config.runtime), self.client.state / "runc" / self.namespace)

    # -- create ----------------------------------------------------------------------------
    def create(
        self,
        cid: str,
        image_name: str,
        opts: SpecOptions,
        *,
        snapshotter: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Container:
        validate_container_id(cid)
        client = self.client
        runc = self.runc()  # fail early and clearly when no runtime is installed
        sn_name = snapshotter or client.config.snapshotter
        image = client.images.get(image_name)
        try:
            self.store.get(cid)
            raise AlreadyExists(f"container {cid!r} already exists")
        except NotFound:
            pass
        unpacked = client.unpack(image_name, snapshotter=sn_name)
        _, manifest = manifest_for(client.content, image.target)
        config = read_config(client.content, Descriptor.from_json(manifest["config"]))
        sn = client.snapshotter(sn_name)
        with ExitStack() as undo:
            try:
                # Writable even for a read-only rootfs (nerdctl's --read-only; the spec's
                # root.readonly has runc remount it read-only once the mount points for
                # -v and the default mounts are made, which a view could not hold).
                mounts = sn.prepare(cid, unpacked.chain_id)
            except AlreadyExists:
                raise AlreadyExists(
                    f"container {cid}: a {sn_name} snapshot {cid!r} exists already (left over? "
                    f"remove it with: ctrstore snapshots --snapshotter {sn_name} rm {cid})"
                ) from None
            undo.callback(sn.remove, cid)
            # The snapshot key is ours now: a bundle without a record is a leftover.
            self._remove_bundle(cid)
            undo.callback(self._remove_bundle, cid)
            rootfs = self._make_bundle(cid)
            mount_all(mounts, rootfs)
            spec = generate(cid, self.namespace, config, opts, rootfs)
            self._write_spec(cid, spec)
            record = self.store.create(
                Container(
                    cid,
                    image=image_name,
                    snapshotter=sn_name,
                    snapshot_key=cid,
                    runtime={"name": RUNTIME_NAME, "options": {"binary": runc.binary}},
                    spec=spec,
                    labels=dict(labels or {}),
                )
            )
            undo.pop_all()
        return record

    # -- the bundle ------------------------------------------------------------------------
    def _make_bundle(self, cid: str) -> Path:
        """``<state>/io.containerd.runtime.v2.task/<ns>/<id>/`` (0700, parents 0711) with the
        ``work`` link and an empty ``rootfs``; returns the rootfs."""
        bundle = self.bundle(cid)
        for d in (bundle.parent.parent, bundle.parent):
            d.mkdir(mode=0o711, parents=True, exist_ok=True)
        bundle.mkdir(mode=0o700, exist_ok=True)
        work = self.work(cid)
        work.mkdir(mode=0o711, parents=True, exist_ok=True)
        if not (bundle / "work").is_symlink():
            (bundle / "work").symlink_to(work)
        rootfs = bundle / "rootfs"
        rootfs.mkdir(mode=0o711, exist_ok=True)
        return rootfs

    def _write_spec(self, cid: str, spec: Mapping[str, object]) -> None:
        (self.bundle(cid) / "config.json").write_text(json.dumps(spec, indent=2))

    def _remove_bundle(self, cid: str) -> None:
        """Unmount the rootfs (and anything below it) and remove the bundle and work dirs."""
        bundle = self.bundle(cid)
        rootfs = bundle / "rootfs"
        if rootfs.exists():
            unmount(rootfs)
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(self.work(cid), ignore_errors=True)

    def _ensure_rootfs(self, c: Container) -> Path:
        """The bundle with its rootfs mounted. After a reboot /run is empty, or the rootfs is
        no longer mounted: the bundle is made again from the record (as containerd makes it
        at every task create) and the snapshot mounted again."""
        bundle = self.bundle(c.id)
        if not (bundle / "config.json").is_file():
            self._make_bundle(c.id)
            self._write_spec(c.id, c.spec)
        rootfs = bundle / "rootfs"
        if not is_mountpoint(rootfs):
            mounts = self.client.snapshotter(c.snapshotter).mounts(c.snapshot_key)
            mount_all(mounts, rootfs)
        return rootfs

    # -- tasks -----------------------------------------------------------------------------
    def start(self, cid: str, *, on_exit: Sequence[str] | None = None) -> TaskStatus:
        """Start the container's process detached, under a shim; returns once it runs. If
        the runtime cannot start it (no such command, ...), the error is raised and the
        container is left as it was: created, and removable.

        ``on_exit``: a command the shim runs once the process has exited and its status is
        recorded (``run -d --rm`` removes the container so)."""
        c = self.store.get(cid)
        st = self.status(cid)
        if st.status in ("running", "paused"):
            raise FailedPrecondition(f"container {cid} is already {st.status}")
        runc = self.runc()
        self._ensure_rootfs(c)
        runc.delete(cid, force=True)  # a stopped task from an earlier start
        bundle = self.bundle(cid)
        for name in _RECORDERS:
            (bundle / name).unlink(missing_ok=True)
        r, w = os.pipe()
        try:
            with open(os.devnull, "rb") as devnull, open(bundle / "shim.log", "ab") as shim_log:
                launcher = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "ctrstore.runtime.shim",
                        "--runtime",
                        runc.binary,
                        "--runtime-root",
                        str(runc.root),
                        "--bundle",
                        str(bundle),
                        "--id",
                        cid,
                        "--ready-fd",
                        str(w),
                        *(["--on-exit", json.dumps(list(on_exit))] if on_exit else []),
                    ],
                    stdin=devnull,
                    stdout=shim_log,
                    stderr=shim_log,
                    pass_fds=(w,),
                    start_new_session=True,
                    cwd="/",  # never keep the caller's directory (or its mount) busy
                )
        finally:
            os.close(w)
        with os.fdopen(r) as ready:
            answer = ready.read().strip()
        launcher.wait()  # the shim forked itself away; this reaps the process we started
        if answer != "ok":
            if not answer.startswith("error "):
                tail = _tail(bundle / "shim.log")
                raise Internal(f"starting container {cid}: the shim died{': ' + tail if tail else ''}")
            kind, _, message = answer.removeprefix("error ").partition("\t")
            raise class_of_kind(kind)(f"starting container {cid}: {message}")
        return self.status(cid)

    def run_attached(self, cid: str, *, fresh: bool = False) -> int:
        """Run the container's process attached to our terminal; returns its exit status.
        ``fresh``: the container was just created, so there is no earlier task to check for
        or clean away (saves two runtime calls on ``run``)."""
        c = self.store.get(cid)
        runc = self.runc()
        if not fresh:
            st = self.status(cid)
            if st.status in ("running", "paused"):
                raise FailedPrecondition(f"container {cid} is already {st.status}")
            self._ensure_rootfs(c)
            runc.delete(cid, force=True)
        bundle = self.bundle(cid)
        for name in ("exit.json", *_RECORDERS):
            (bundle / name).unlink(missing_ok=True)
        (bundle / "attach.pid").write_text(str(os.getpid()))
        try:
            status = runc.run_foreground(cid, bundle)
            write_exit(bundle, status)
        finally:
            (bundle / "attach.pid").unlink(missing_ok=True)
        return status

    def _recorder_alive(self, cid: str) -> bool | None:
        """Whether the process that records the task's exit (shim, or attached ``run``) is
        alive; None if none was ever recorded (or it finished and said so)."""
        bundle = self.bundle(cid)
        seen = False
        for name in _RECORDERS:
            path = bundle / name
            pid = _read_pid(path)
            if not pid:
                continue
            seen = True
            if _alive_since(pid, path):
                return True
        return False if seen else None

    def status(self, cid: str) -> TaskStatus:
        bundle = self.bundle(cid)
        state = self.runc().state(cid) if shutil.which(self.client.config.runtime) else None
        if state is not None:
            s = str(state.get("status", "unknown"))
            pid = int(state.get("pid", 0))
            if s != "stopped" and not (s == "running" and not _alive(pid)):
                return TaskStatus(s, pid)
        # The recorder writes exit.json, then removes its pid file: look at them in the
        # other order, so that a recorder seen gone has left its exit.json to be read.
        recorder = self._recorder_alive(cid)
        ex = _read_exit(bundle)
        if ex is not None:
            return TaskStatus("stopped", 0, ex[0], ex[1])
        if recorder:
            # Still starting the task, or about to record how it ended.
            return TaskStatus("stopped" if state is not None else "created")
        if recorder is False or state is not None:
            # The shim was killed, or the machine rebooted: nobody will record an exit
            # status. As containerd does for a dead shim, the task ended with 255.
            if bundle.is_dir():
                write_exit(bundle, LOST_EXIT_STATUS)
                for name in _RECORDERS:
                    (bundle / name).unlink(missing_ok=True)
                ex = _read_exit(bundle)
            return TaskStatus("stopped", 0, LOST_EXIT_STATUS, ex[1] if ex else None)
        return TaskStatus("created" if bundle.is_dir() else "unknown")

    def _task_active(self, cid: str) -> bool:
        """Running, or paused, or being started: more output may come."""
        st = self.status(cid).status
        return st in ("running", "paused") or (st == "created" and bool(self._recorder_alive(cid)))

    def kill(self, cid: str, signal: str = "SIGTERM", *, all_processes: bool = False) -> None:
        self.store.get(cid)
        if self.status(cid).status not in ("running", "paused"):
            raise FailedPrecondition(f"container {cid} is not running")
        self.runc().kill(cid, signal, all_processes=all_processes)

    def wait(self, cid: str, timeout: float | None = None) -> int:
        """Block until the task stops; its exit status."""
        self.store.get(cid)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.status == "stopped" and st.exit_status is not None:
                return st.exit_status
            if st.status in ("created", "unknown") and not self._recorder_alive(cid):
                raise FailedPrecondition(f"container {cid} has no running task (status {st.status})")
            if deadline is not None and time.monotonic() > deadline:
                raise Unavailable(f"container {cid} still running after {timeout}s")
            time.sleep(0.05)

    def stop(self, cid: str, timeout: float = 10.0) -> int | None:
        """SIGTERM to the container's init, then SIGKILL to all its processes after
        ``timeout`` seconds (as nerdctl stop); the exit status if it was running."""
        self.store.get(cid)
        if self.status(cid).status not in ("running", "paused"):
            return None
        runc = self.runc()
        with contextlib.suppress(FailedPrecondition):  # it exited meanwhile
            runc.kill(cid, "SIGTERM")
        try:
            return self.wait(cid, timeout)
        except Unavailable:
            with contextlib.suppress(FailedPrecondition):
                runc.kill(cid, "SIGKILL", all_processes=True)
            return self.wait(cid, 10)

    def exec(
        self,
        cid: str,
        args: list[str],
        *,
        tty: bool = False,
        env: list[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        detach: bool = False,
    ) -> int:
        """Run ``args`` in the running container (``runc exec``); its exit status. ``user``
        is a name or id, ``[:group]``, resolved in the container's ``/etc/passwd``."""
        self.store.get(cid)
        if self.status(cid).status != "running":
            raise FailedPrecondition(f"container {cid} is not running")
        if cwd is not None and not cwd.startswith("/"):
            raise InvalidArgument(f"working directory {cwd!r} must be an absolute path")
        uid_gid: str | None = None
        gids: tuple[int, ...] = ()
        if user:
            u = resolve_user(self.bundle(cid) / "rootfs", user)
            uid_gid, gids = f"{u.uid}:{u.gid}", u.additional_gids
        return self.runc().exec(
            cid, args, tty=tty, env=env or [], cwd=cwd, user=uid_gid, additional_gids=gids, detach=detach
        )

    def logs(self, cid: str, *, follow: bool = False) -> Iterator[bytes]:
        self.store.get(cid)
        log = self.bundle(cid) / "log"
        if not log.exists():
            return
        with open(log, "rb") as f:
            while True:
                chunk = f.read(1 << 16)
                if chunk:
                    yield chunk
                    continue
                if not follow or not self._task_active(cid):
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                time.sleep(0.1)

    def delete(self, cid: str, *, force: bool = False, task_gone: bool = False) -> None:
        """Remove the container: its task (killed first with ``force``), rootfs mount, bundle,
        snapshot and record. Works after a killed shim or a reboot too. ``task_gone``: the
        caller knows the runtime has no task left (an attached ``runc run`` returned), so the
        runtime is not asked."""
        c = self.store.get(cid)
        if not task_gone:
            st = self.status(cid)
            if st.status in ("running", "paused"):
                if not force:
                    raise FailedPrecondition(f"container {cid} is {st.status}; stop it first or use --force")
                with contextlib.suppress(FailedPrecondition):
                    self.runc().kill(cid, "SIGKILL", all_processes=True)
                self.wait(cid, 10)
            if shutil.which(self.client.config.runtime):
                self.runc().delete(cid, force=True)
        deadline = time.monotonic() + 5
        while self._recorder_alive(cid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _remove_cgroups(c.spec)
        self._remove_bundle(cid)
        if c.snapshot_key:
            try:
                self.client.snapshotter(c.snapshotter).remove(c.snapshot_key)
            except NotFound:
                pass
        self.store.delete(cid)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _read_exit(bundle: Path) -> tuple[int, str | None] | None:
    try:
        ex = json.loads((bundle / "exit.json").read_text())
        return int(ex["status"]), ex.get("exited_at")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_cgroups(spec: Mapping[str, object]) -> None:
    """Remove the container's (empty) cgroups, which runc leaves behind when its state is
    gone (a killed shim and a deleted state dir, a simulated reboot). Only rmdir: a cgroup
    that still has processes stays."""
    linux = spec.get("linux")
    path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    if not isinstance(path, str) or not path.startswith("/") or ":" in path:
        return
    for m in mountinfo():
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        d = Path(f"{m.mount_point}{path}")
        if d.is_dir():
            with contextlib.suppress(OSError):
                d.rmdir()


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _alive_since(pid: int, pid_file: Path) -> bool:
    """Whether ``pid`` is alive and is the process that wrote ``pid_file``: a process that
    started after the file was written only reuses the number (after a reboot)."""
    if not _alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        written = pid_file.stat().st_mtime
    except (OSError, ValueError, IndexError, StopIteration):
        return True
    started = btime + start_ticks / os.sysconf("SC_CLK_TCK")
    return started <= written + 2
