"""Tasks, with no daemon: the runtime plugin ``io.containerd.runtime.v2.task``.

A task is a container's running process. The plugin's instance,
:class:`ctrstore.runtime.manager.TaskManager`, knows where bundles and runc's state live;
:class:`Tasks` is one namespace's view of it: it starts a task detached under a shim
(``ctrstore.runtime.shim``) or attached with ``runc run``, and kills, waits for, stops, execs
into, reads the log of and deletes it. It needs no container record: the caller hands over
the spec and, for a rootfs that is not mounted (after a reboot), the snapshot's mounts.

How a task's state is read, with no daemon to ask: runc's state first (``created``,
``running``, ``paused``); then ``exit.json`` (how it ended); then whether its recorder (the
shim, or the attached ``run``) is alive. A recorder that died without recording an exit (a
killed shim, a reboot) leaves the task stopped with 255, as containerd reports a dead shim.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ctrstore.errdefs import (
    CtrstoreError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    Unavailable,
    class_of_kind,
)
from ctrstore.runtime._proc import alive
from ctrstore.runtime.bundle import Bundle
from ctrstore.runtime.capture import Capture
from ctrstore.runtime.runc import Runc, find_runtime

if TYPE_CHECKING:
    from ctrstore.mount import Mount
    from ctrstore.runtime.logs import LogEntry
    from ctrstore.runtime.manager import TaskManager

__all__ = ["LOST_EXIT_STATUS", "RuntimeConfig", "TaskStatus", "Tasks", "remove_cgroups", "shim_error"]

LOST_EXIT_STATUS = 255
"""The exit status of a task whose shim died without recording one (containerd's too)."""

Mounts = Callable[[], "Sequence[Mount]"]
"""Gives the container snapshot's mounts (asked only when the rootfs must be mounted again)."""


class RuntimeConfig(Protocol):
    """What the tasks read from the configuration, at each use (so a changed ``runtime``
    counts at once, and a runtime removed after create is reported when starting)."""

    runtime: str
    """The OCI runtime binary's name or path (``runc``, ``crun``)."""


UP_STATES = ("running", "paused", "restarting")
"""The statuses of a task that is up, or will be again by itself: what ``ps`` and
``client.containers.list()`` show without ``-a``/``all``, and what cannot be started again."""


@dataclass(frozen=True)
class TaskStatus:
    status: str
    """created (never started, or its start failed), running, paused, restarting (its restart
    policy will start it again), stopped, or unknown (no bundle: /run was emptied by a
    reboot). A task whose shim died without recording an exit status (killed, or a reboot) is
    stopped with 255, as containerd reports it."""
    pid: int = 0
    exit_status: int | None = None
    exited_at: str | None = None
    restarts: int = 0
    """How often the shim's restart policy started the process again."""
    oom_killed: bool = False
    """The task ended because the kernel's OOM killer killed its process (``-m``)."""
    started_at: str | None = None
    """When the task last started (RFC 3339), if known: runc's ``created`` for a live task,
    else when ``runc create`` wrote ``init.pid``."""


def _started_at(bundle: Bundle) -> str | None:
    """When ``runc create`` wrote the bundle's ``init.pid`` (RFC 3339), if it did."""
    from datetime import UTC, datetime

    from ctrstore._timeutil import format_rfc3339

    try:
        return format_rfc3339(datetime.fromtimestamp(bundle.init_pid.stat().st_mtime, UTC))
    except OSError:
        return None


class Tasks:
    """The tasks of one namespace."""

    def __init__(self, manager: TaskManager, namespace: str, config: RuntimeConfig) -> None:
        self.manager = manager
        self.namespace = namespace
        self.config = config

    def bundle(self, cid: str) -> Bundle:
        return self.manager.bundle(self.namespace, cid)

    def runc(self) -> Runc:
        """The configured runtime; FailedPrecondition naming what to install if it is missing."""
        return Runc(find_runtime(self.config.runtime), self.manager.runc_root / self.namespace)

    def runtime_installed(self) -> bool:
        return shutil.which(self.config.runtime) is not None

    # -- the rootfs ------------------------------------------------------------------------------
    def ensure_bundle(self, cid: str, spec: Mapping[str, Any], mounts: Mounts) -> Bundle:
        """The bundle with its rootfs mounted. After a reboot /run is empty, or the rootfs is
        no longer mounted: the bundle is made again from the spec (as containerd makes it at
        every task create) and the snapshot mounted again."""
        from ctrstore.mount import is_mountpoint, mount_all

        bundle = self.bundle(cid)
        if not bundle.has_spec():
            bundle.create()
            bundle.write_spec(spec)
        if not is_mountpoint(bundle.rootfs):
            mount_all(mounts(), bundle.rootfs)
        return bundle

    # -- starting ------------------------------------------------------------------------------
    def start(
        self,
        cid: str,
        spec: Mapping[str, Any],
        mounts: Mounts,
        *,
        on_exit: Sequence[str] | None = None,
        before_create: Callable[[Bundle], None] | None = None,
        restart: str | None = None,
        open_stdin: bool = False,
        stdin_once: bool = False,
        attach_first: bool = False,
        fresh: bool = False,
    ) -> TaskStatus:
        """Start the task detached, under a shim; returns once it runs. If the runtime cannot
        start it (no such command, ...), the shim's error is raised as its errdefs class and
        the container is left as it was: created, and removable.

        ``on_exit``: a command the shim runs once the process has exited and its status is
        recorded (``run -d --rm`` removes the container so). ``restart``: the restart policy
        (``ctrstore.runtime.restart``). ``open_stdin``: keep the container's stdin open for
        ``attach`` (``-i``); ``stdin_once``: close it when the first client's stdin ends.
        ``attach_first``: return once the container is created, and have the shim start the
        process only when a client attached (:meth:`attach`). ``fresh``: the bundle was just
        made, so there is no earlier task to check for or clean away. ``before_create``:
        called with the bundle once it is ready and no task runs, just before the shim creates
        the task (the container's networking is set up so)."""
        from ctrstore.runtime.restart import RestartPolicy
        from ctrstore.runtime.shim import spawn

        policy = str(RestartPolicy.parse(restart))
        runc = self.runc()
        if fresh:
            bundle = self.bundle(cid)
        else:
            st = self.status(cid)
            if st.status in UP_STATES:
                raise FailedPrecondition(f"container {cid} is already {st.status}")
            bundle = self.ensure_bundle(cid, spec, mounts)
            runc.delete(cid, force=True)  # a stopped task from an earlier start
        bundle.clear_recorders(exit_too=True)
        for f in (bundle.stopping, bundle.restart_json):
            f.unlink(missing_ok=True)
        if before_create is not None:
            before_create(bundle)
        r, w = os.pipe()
        try:
            first = spawn(
                [
                    "--runtime",
                    runc.binary,
                    "--runtime-root",
                    str(runc.root),
                    "--bundle",
                    str(bundle.path),
                    "--id",
                    cid,
                    "--ready-fd",
                    str(w),
                    "--restart",
                    policy,
                    *(["--stdin"] if open_stdin else []),
                    *(["--stdin-once"] if stdin_once else []),
                    *(["--attach-first"] if attach_first else []),
                    *(["--on-exit", json.dumps(list(on_exit))] if on_exit else []),
                ],
                bundle.shim_log,
            )
        finally:
            os.close(w)
        with os.fdopen(r) as ready:
            answer = ready.read()
        os.waitpid(first, 0)  # the shim forked itself away; this reaps the process we started
        error = shim_error(cid, answer, bundle)
        if error is not None:
            raise error
        if attach_first:
            return TaskStatus("created", restarts=0)  # (its process starts once a client attaches)
        return self.status(cid)

    def attach(
        self,
        cid: str,
        *,
        stdin: bool,
        tty: bool,
        proxy_signals: bool = True,
        detach_keys: bytes | None = None,
    ) -> int | None:
        """Attach our stdio (fds 0, 1, 2) to the running task through its shim
        (:func:`ctrstore.runtime.attach.attach`); its exit status, or None if we detached
        (with ``detach_keys``, default Ctrl-P Ctrl-Q) while it runs on."""
        from ctrstore.runtime.attach import DETACH_KEYS, attach

        status = attach(
            self.bundle(cid).path,
            stdin=stdin,
            tty=tty,
            proxy_signals=proxy_signals,
            detach_keys=DETACH_KEYS if detach_keys is None else detach_keys,
        )
        if status is None and not self.active(cid):
            return self.wait(cid, 10)  # the shim went away without a word
        return status

    # -- state ---------------------------------------------------------------------------------
    def status(self, cid: str) -> TaskStatus:
        from ctrstore.runtime.restart import read_record

        bundle = self.bundle(cid)
        restarts = read_record(bundle.restart_json)
        state = self.runc().state(cid) if self.runtime_installed() else None
        if state is not None:
            s = str(state.get("status", "unknown"))
            pid = int(state.get("pid", 0))
            if s != "stopped" and not (s == "running" and not alive(pid)):
                created = state.get("created")
                return TaskStatus(
                    s,
                    pid,
                    restarts=restarts.count,
                    started_at=created if isinstance(created, str) else None,
                )
        # The recorder writes exit.json, then removes its pid file: look at them in the
        # other order, so that a recorder seen gone has left its exit.json to be read.
        recorder = bundle.recorder_alive()
        ex = bundle.read_exit()
        if ex is not None:
            return TaskStatus(
                "stopped", 0, ex[0], ex[1], restarts.count, bundle.oom_killed(), _started_at(bundle)
            )
        if recorder:
            if restarts.restarting:
                return TaskStatus("restarting", 0, restarts.last_exit, restarts.at, restarts.count)
            if bundle.init_pid.exists():
                # Its process has ended and the shim is recording how (after detaching it from
                # its networks): until exit.json says so it counts as running, as docker's
                # container does until containerd's exit event, so that "exited" always comes
                # with its exit status.
                return TaskStatus("running", 0, restarts=restarts.count)
            # Still starting the task.
            return TaskStatus("stopped" if state is not None else "created", restarts=restarts.count)
        if recorder is False or state is not None:
            # The shim was killed, or the machine rebooted: nobody will record an exit
            # status. As containerd does for a dead shim, the task ended with 255.
            if bundle.exists():
                with contextlib.suppress(OSError):  # (an rm removing the bundle meanwhile)
                    bundle.write_exit(LOST_EXIT_STATUS)
                    bundle.clear_recorders()
                ex = bundle.read_exit()
            return TaskStatus("stopped", 0, LOST_EXIT_STATUS, ex[1] if ex else None, restarts.count)
        return TaskStatus("created" if bundle.exists() else "unknown")

    def active(self, cid: str) -> bool:
        """Running, or paused, or being started: more output may come."""
        st = self.status(cid).status
        return st in UP_STATES or (st == "created" and bool(self.bundle(cid).recorder_alive()))

    # -- signals and waiting -------------------------------------------------------------------
    def mark_stopping(self, cid: str) -> None:
        """The user stops the task: its shim must not restart it (``stopping`` marker)."""
        with contextlib.suppress(OSError):
            self.bundle(cid).stopping.touch()

    def kill(
        self, cid: str, signal: str = "SIGTERM", *, all_processes: bool = False, final: bool = False
    ) -> None:
        """Signal the task's init (all its processes with ``all_processes``). ``final``: the
        signal is meant to end it (SIGKILL, its stop signal), so its restart policy does not
        start it again (as docker kill)."""
        st = self.status(cid)
        if final and self._live(st, cid):
            self.mark_stopping(cid)
            if st.status not in ("running", "paused"):
                return  # between two runs: the marker is enough
        if st.status not in ("running", "paused"):
            raise FailedPrecondition(f"container {cid} is not running")
        self.runc().kill(cid, signal, all_processes=all_processes)

    def wait(self, cid: str, timeout: float | None = None) -> int:
        """Block until the task stops (for good: a task its restart policy restarts is waited
        for until it stops restarting); its exit status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status(cid)
            if st.status == "stopped" and st.exit_status is not None:
                return st.exit_status
            if st.status in ("created", "unknown") and not self.bundle(cid).recorder_alive():
                raise FailedPrecondition(f"container {cid} has no running task (status {st.status})")
            if deadline is not None and time.monotonic() > deadline:
                raise Unavailable(f"container {cid} still running after {timeout}s")
            time.sleep(0.05)

    def _live(self, st: TaskStatus, cid: str) -> bool:
        """Whether the task runs, or will run again: running, paused, restarting, or between
        two runs of its restart policy (its shim alive, no final exit recorded)."""
        if st.status in UP_STATES:
            return True
        return st.exit_status is None and bool(self.bundle(cid).recorder_alive())

    def _signal_until_stopped(self, cid: str, signal: str, timeout: float) -> int | None:
        """Send ``signal`` to the task whenever a run of it is seen (a restart policy may start
        one more before it sees the ``stopping`` marker) until it has stopped for good or
        ``timeout`` seconds passed; its exit status, or None on time-out."""
        runc = self.runc()
        deadline = time.monotonic() + timeout
        signalled = 0
        while True:
            st = self.status(cid)
            if st.status == "stopped" and st.exit_status is not None:
                return st.exit_status
            if not self._live(st, cid):
                return st.exit_status
            runs = st.status in ("running", "paused") or (st.status == "created" and signal == "SIGKILL")
            if runs and st.pid and st.pid != signalled:
                with contextlib.suppress(FailedPrecondition):  # it exited meanwhile
                    runc.kill(cid, signal, all_processes=signal == "SIGKILL")
                    if st.status == "paused" and signal == "SIGKILL":
                        runc.resume(cid)
                signalled = st.pid
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def stop(self, cid: str, timeout: float = 10.0, signal: str = "SIGTERM") -> int | None:
        """``signal`` (the container's stop signal, SIGTERM by default) to the task's init,
        then SIGKILL to all its processes after ``timeout`` seconds (as docker stop); its
        restart policy does not start it again. The exit status if it was running."""
        if not self._live(self.status(cid), cid):
            return None
        self.mark_stopping(cid)
        status = self._signal_until_stopped(cid, signal, timeout)
        if status is None:
            status = self._signal_until_stopped(cid, "SIGKILL", 10)
        if status is None:
            raise Unavailable(f"container {cid} still running 10 s after SIGKILL")
        return status

    def pause(self, cid: str) -> None:
        """Freeze every process of the task (``runc pause``: the freezer cgroup)."""
        if self.status(cid).status != "running":
            raise FailedPrecondition(f"container {cid} is not running")
        self.runc().pause(cid)

    def resume(self, cid: str) -> None:
        if self.status(cid).status != "paused":
            raise FailedPrecondition(f"container {cid} is not paused")
        self.runc().resume(cid)

    def pids(self, cid: str) -> list[int]:
        """The host pids of the task's processes (``runc ps``)."""
        if self.status(cid).status not in ("running", "paused"):
            raise FailedPrecondition(f"container {cid} is not running")
        return self.runc().ps(cid)

    # -- exec and logs -------------------------------------------------------------------------
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
        """Run ``args`` in the running task (``runc exec``); its exit status. ``user`` is a
        name or id, ``[:group]``, resolved in the container's ``/etc/passwd``."""
        from ctrstore.runtime.lookpath import check_command

        st = self.status(cid)
        if st.status != "running":
            raise FailedPrecondition(f"container {cid} is not running")
        if cwd is not None and not cwd.startswith("/"):
            raise InvalidArgument(f"working directory {cwd!r} must be an absolute path")
        if not args:
            raise InvalidArgument("no command given to exec")
        with contextlib.suppress(OSError, ValueError):
            spec = json.loads(self.bundle(cid).config_json.read_text())
            process = spec.get("process", {})
            env_all = [*process.get("env", []), *(env or [])]
            check_command(Path(f"/proc/{st.pid}/root"), args[0], env_all, cwd or process.get("cwd", "/"))
        uid_gid, gids = self._exec_user(cid, user)
        return self.runc().exec(
            cid, args, tty=tty, env=env or [], cwd=cwd, user=uid_gid, additional_gids=gids, detach=detach
        )

    def _exec_user(self, cid: str, user: str | None) -> tuple[str | None, tuple[int, ...]]:
        """``exec -u USER``'s ``uid:gid`` and additional gids for runc, resolved in the
        container's ``/etc/passwd`` (none: the container's own user). A single-id namespace
        (rootless) can run only 0:0, with no additional groups."""
        if not user:
            return None, ()
        from ctrstore.oci.user import resolve_user
        from ctrstore.rootless import single_id
        from ctrstore.rootless.idmap import check_process_user

        u = resolve_user(self.bundle(cid).rootfs, user)
        check_process_user(u.uid, u.gid)
        return f"{u.uid}:{u.gid}", () if single_id() else u.additional_gids

    # -- captured output (the Python API) ------------------------------------------------------
    def exec_captured(
        self,
        cid: str,
        args: Sequence[str],
        *,
        env: Sequence[str] = (),
        cwd: str | None = None,
        user: str | None = None,
    ) -> Capture:
        """Start ``args`` in the running task with its stdout and stderr captured apart (see
        ``ctrstore.runtime.capture``); as :meth:`exec` otherwise, without a terminal."""
        if not args:
            raise InvalidArgument(f"exec in container {cid}: no command given")
        # (The checks of exec, above.)
        if self.status(cid).status != "running":
            raise FailedPrecondition(f"container {cid} is not running")
        if cwd is not None and not cwd.startswith("/"):
            raise InvalidArgument(f"working directory {cwd!r} must be an absolute path")
        uid_gid, gids = self._exec_user(cid, user)
        flags: list[str] = []
        for e in env:
            flags += ["--env", e]
        if cwd:
            flags += ["--cwd", cwd]
        if uid_gid:
            flags += ["--user", uid_gid]
        for g in gids:
            flags += ["--additional-gids", str(g)]
        return Capture(self.runc(), "exec", [*flags, cid, *args], what=f"exec in container {cid}")

    def run_captured(
        self,
        cid: str,
        spec: Mapping[str, Any],
        mounts: Mounts,
        *,
        fresh: bool = False,
        before_create: Callable[[Bundle], None] | None = None,
    ) -> Capture:
        """Run the task in the foreground (``runc run``, no shim: the Python API's
        ``client.run``) with the process's stdout and stderr captured apart (see
        ``ctrstore.runtime.capture``); the exit status is recorded in ``exit.json`` when it
        ends. A spec asking for a terminal is refused: a captured run has none (start it
        detached instead). ``before_create``: as for :meth:`start`."""
        if spec.get("process", {}).get("terminal"):
            raise InvalidArgument(f"container {cid} wants a terminal: a captured run has none (detach it)")
        runc = self.runc()
        if fresh:
            bundle = self.bundle(cid)
        else:
            st = self.status(cid)
            if st.status in ("running", "paused"):
                raise FailedPrecondition(f"container {cid} is already {st.status}")
            bundle = self.ensure_bundle(cid, spec, mounts)
            runc.delete(cid, force=True)
        bundle.clear_recorders(exit_too=True)
        if before_create is not None:
            before_create(bundle)
        bundle.attach_pid.write_text(str(os.getpid()))

        def recorded(status: int) -> None:
            try:
                bundle.write_exit(status)
            finally:
                bundle.attach_pid.unlink(missing_ok=True)

        try:
            return Capture(
                runc,
                "run",
                ["--bundle", str(bundle.path), cid],
                what=f"running container {cid}",
                on_exit=recorded,
            )
        except BaseException:
            bundle.attach_pid.unlink(missing_ok=True)
            raise

    def logs(self, cid: str, *, follow: bool = False) -> Iterator[bytes]:
        """What the task wrote to stdout and stderr, in order (see :meth:`log_entries`)."""
        for e in self.log_entries(cid, follow=follow):
            yield e.data

    def log_entries(
        self,
        cid: str,
        *,
        follow: bool = False,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tail: int | None = None,
    ) -> Iterator[LogEntry]:
        """The task's log (:mod:`ctrstore.runtime.logs`): every line with its stream and time,
        those from ``since_ns`` to before ``until_ns``, the last ``tail`` of them; with
        ``follow``, then what comes until the task stops for good."""
        from ctrstore.runtime.logs import read_log

        return read_log(
            self.bundle(cid).log,
            since_ns=since_ns,
            until_ns=until_ns,
            tail=tail,
            follow=(lambda: self.active(cid)) if follow else None,
        )

    # -- delete --------------------------------------------------------------------------------
    def delete(
        self,
        cid: str,
        spec: Mapping[str, Any],
        *,
        force: bool = False,
        task_gone: bool = False,
        before_remove: Callable[[Bundle], None] | None = None,
    ) -> None:
        """Remove the task (killed first with ``force``), its cgroups, rootfs mount and
        bundle. Works after a killed shim or a reboot too. A task that stopped for good
        (``exit.json``) is not asked about again; ``task_gone``: the caller knows the runtime
        has no task left, so it is not asked at all. ``before_remove``: called with the bundle
        once the task is gone, before the bundle is removed (the container's networking is torn
        down so); if it raises, the bundle stays."""
        bundle = self.bundle(cid)
        # exit.json is written once a task has stopped for good (start removes an old one).
        if not task_gone and bundle.read_exit() is None:
            st = self.status(cid)
            if self._live(st, cid):
                if not force:
                    raise FailedPrecondition(f"container {cid} is {st.status}; stop it first or use --force")
                self.mark_stopping(cid)
                if self._signal_until_stopped(cid, "SIGKILL", 10) is None:
                    raise Unavailable(f"container {cid} still running 10 s after SIGKILL")
        if (
            not task_gone
            and self.runtime_installed()
            and (self.manager.runc_root / self.namespace / cid).exists()
        ):
            self.runc().delete(cid, force=True)
        deadline = time.monotonic() + 5
        while bundle.recorder_alive() and time.monotonic() < deadline:
            time.sleep(0.005)  # (a shim that has told its exit is gone within milliseconds)
        if before_remove is not None:
            before_remove(bundle)
        remove_cgroups(spec)
        bundle.remove()


def shim_error(cid: str, answer: str, bundle: Bundle) -> CtrstoreError | None:
    """The error in the shim's answer (one JSON line, see ``ctrstore.runtime.shim``) as its
    errdefs class; None if the task started. No answer, or no JSON, is a dead shim: Internal
    with the last line it logged."""
    try:
        doc = json.loads(answer)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        if doc.get("ok") is True:
            return None
        err = doc.get("error")
        if isinstance(err, dict):
            kind, message = str(err.get("kind", "")), str(err.get("message", ""))
            return class_of_kind(kind)(f"starting container {cid}: {message}")
    tail = bundle.shim_log_tail()
    return Internal(f"starting container {cid}: the shim died{': ' + tail if tail else ''}")


def remove_cgroups(spec: Mapping[str, Any]) -> None:
    """Remove the container's (empty) cgroups, which runc leaves behind when its state is
    gone (a killed shim and a deleted state dir, a simulated reboot). Only rmdir: a cgroup
    that still has processes stays."""
    from ctrstore.mount import mountinfo

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
