"""Containers and their tasks, with no daemon: the seed's ``run``.

Creating a container prepares one more, writable snapshot keyed by the container id on top of
the image's chainID, records the container in meta.db, writes the bundle
``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`` (``config.json``, and ``rootfs/``
with the overlay mounted: lowerdir = the image's layers newest first, upperdir/workdir = the
container's snapshot) and generates the OCI spec. Starting it runs the OCI runtime: attached
(``runc run``) or detached, through the shim (``ctrstore.runtime.shim``). Whatever the
container writes lands in its snapshot's ``fs``.

Every step is undone if a later one fails: no mount, snapshot, bundle or record is left
behind. After a reboot or a killed shim, the container shows as stopped and ``delete`` still
cleans up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ctrstore.content import Descriptor
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, Internal, NotFound, Unavailable
from ctrstore.images import manifest_for, read_json
from ctrstore.metadata.containers import Container
from ctrstore.mount import is_mountpoint, mount_all, unmount
from ctrstore.runtime.runc import Runc, find_runtime
from ctrstore.runtime.spec import SpecOptions, generate, validate_container_id

if TYPE_CHECKING:
    from ctrstore.client import Client

__all__ = ["TASK_PLUGIN", "ContainerManager", "TaskStatus"]

TASK_PLUGIN = "io.containerd.runtime.v2.task"
RUNTIME_NAME = "io.containerd.runc.v2"


@dataclass(frozen=True)
class TaskStatus:
    status: str
    """created, running, paused, stopped, or unknown (no task: never started, or lost)."""
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
        config = read_json(client.content, Descriptor.from_json(manifest["config"]))
        sn = client.snapshotter(sn_name)
        bundle = self.bundle(cid)
        with ExitStack() as undo:
            mounts = (sn.view if opts.read_only else sn.prepare)(cid, unpacked.chain_id)
            undo.callback(sn.remove, cid)
            for d in (bundle.parent.parent, bundle.parent):
                d.mkdir(mode=0o711, parents=True, exist_ok=True)
            bundle.mkdir(mode=0o700)
            undo.callback(shutil.rmtree, bundle, True)
            work = self.work(cid)
            work.mkdir(mode=0o711, parents=True, exist_ok=True)
            undo.callback(shutil.rmtree, work, True)
            (bundle / "work").symlink_to(work)
            rootfs = bundle / "rootfs"
            rootfs.mkdir(mode=0o711)
            mount_all(mounts, rootfs)
            undo.callback(unmount, rootfs)
            spec = generate(cid, self.namespace, config, opts, rootfs)
            (bundle / "config.json").write_text(json.dumps(spec, indent=2))
            (bundle / "mounts.json").write_text(json.dumps([m.to_json() for m in mounts]))
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

    # -- tasks -----------------------------------------------------------------------------
    def _ensure_rootfs(self, c: Container) -> Path:
        """The rootfs mount (re-made after a reboot, when /run was emptied)."""
        bundle = self.bundle(c.id)
        rootfs = bundle / "rootfs"
        if not bundle.is_dir():
            raise FailedPrecondition(f"container {c.id}: its bundle {bundle} is gone; remove and recreate it")
        if not is_mountpoint(rootfs):
            mounts = self.client.snapshotter(c.snapshotter).mounts(c.snapshot_key)
            mount_all(mounts, rootfs)
        return rootfs

    def start(self, cid: str) -> TaskStatus:
        """Start the container's process detached, under a shim; returns once it runs."""
        c = self.store.get(cid)
        st = self.status(cid)
        if st.status in ("running", "paused"):
            raise FailedPrecondition(f"container {cid} is already {st.status}")
        self._ensure_rootfs(c)
        runc = self.runc()
        runc.delete(cid, force=True)  # a stopped task from an earlier start
        bundle = self.bundle(cid)
        r, w = os.pipe()
        try:
            with open(os.devnull, "rb") as devnull, open(bundle / "shim.log", "ab") as shim_log:
                subprocess.Popen(
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
                    ],
                    stdin=devnull,
                    stdout=shim_log,
                    stderr=shim_log,
                    pass_fds=(w,),
                    start_new_session=True,
                )
        finally:
            os.close(w)
        with os.fdopen(r) as ready:
            answer = ready.read().strip()
        if answer != "ok":
            raise Internal(f"starting container {cid}: {answer.removeprefix('error: ') or 'the shim died'}")
        return self.status(cid)

    def run_attached(self, cid: str) -> int:
        """Run the container's process attached to our terminal; returns its exit status."""
        c = self.store.get(cid)
        self._ensure_rootfs(c)
        runc = self.runc()
        runc.delete(cid, force=True)
        bundle = self.bundle(cid)
        (bundle / "exit.json").unlink(missing_ok=True)
        status = runc.run_foreground(cid, bundle)
        from ctrstore.runtime.shim import write_exit

        write_exit(bundle, status)
        return status

    def status(self, cid: str) -> TaskStatus:
        bundle = self.bundle(cid)
        try:
            ex = json.loads((bundle / "exit.json").read_text())
        except (FileNotFoundError, ValueError):
            ex = None
        state = self.runc().state(cid) if shutil.which(self.client.config.runtime) else None
        if state is not None:
            s = str(state.get("status", "unknown"))
            if s == "stopped" or (s == "running" and not _alive(int(state.get("pid", 0)))):
                return TaskStatus("stopped", 0, ex["status"] if ex else None, ex["exited_at"] if ex else None)
            return TaskStatus(s, int(state.get("pid", 0)))
        if ex is not None:
            return TaskStatus("stopped", 0, ex["status"], ex["exited_at"])
        return TaskStatus("created" if bundle.is_dir() else "unknown")

    def kill(self, cid: str, signal: str = "SIGTERM", *, all_processes: bool = False) -> None:
        self.store.get(cid)
        if self.status(cid).status not in ("running", "paused"):
            raise FailedPrecondition(f"container {cid} is not running")
        self.runc().kill(cid, signal, all_processes=all_processes)

    def wait(self, cid: str, timeout: float | None = None) -> int:
        """Block until the task stops; its exit status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        shim_pid = _read_pid(self.bundle(cid) / "shim.pid")
        while True:
            st = self.status(cid)
            if st.status not in ("running", "paused"):
                if st.exit_status is not None:
                    return st.exit_status
                if not _alive(shim_pid):  # no shim is going to record an exit status
                    raise FailedPrecondition(f"container {cid} has no running task (status {st.status})")
            if deadline is not None and time.monotonic() > deadline:
                raise Unavailable(f"container {cid} still running after {timeout}s")
            time.sleep(0.05)

    def stop(self, cid: str, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit status if it ran."""
        if self.status(cid).status not in ("running", "paused"):
            return None
        self.runc().kill(cid, "SIGTERM", all_processes=True)
        try:
            return self.wait(cid, timeout)
        except Unavailable:
            self.runc().kill(cid, "SIGKILL", all_processes=True)
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
        if self.status(cid).status != "running":
            raise FailedPrecondition(f"container {cid} is not running")
        return self.runc().exec(cid, args, tty=tty, env=env or [], cwd=cwd, user=user, detach=detach)

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
                if not follow or self.status(cid).status not in ("running", "paused", "created"):
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                time.sleep(0.1)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Remove the container: its task (killed first with ``force``), rootfs mount, bundle,
        snapshot and record."""
        c = self.store.get(cid)
        st = self.status(cid)
        if st.status in ("running", "paused"):
            if not force:
                raise FailedPrecondition(f"container {cid} is {st.status}; stop it first or use --force")
            self.runc().kill(cid, "SIGKILL", all_processes=True)
            self.wait(cid, 10)
        if shutil.which(self.client.config.runtime):
            self.runc().delete(cid, force=True)
        bundle = self.bundle(cid)
        shim_pid = _read_pid(bundle / "shim.pid")
        if shim_pid and _alive(shim_pid):
            deadline = time.monotonic() + 5
            while _alive(shim_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        rootfs = bundle / "rootfs"
        if rootfs.exists():
            unmount(rootfs)
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(self.work(cid), ignore_errors=True)
        if c.snapshot_key:
            try:
                self.client.snapshotter(c.snapshotter).remove(c.snapshot_key)
            except NotFound:
                pass
        self.store.delete(cid)


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
