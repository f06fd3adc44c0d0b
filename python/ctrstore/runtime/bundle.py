"""A task's bundle: every path and file of it, named once, for the task manager and the shim.

``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`` (0700, parents 0711), as
containerd's ``core/runtime/v2/bundle.go`` lays it out:

==================  ==========================================================================
``config.json``     the OCI runtime spec
``rootfs/``         (0711) where the container's snapshot is mounted
``work``            a link to ``<root>/io.containerd.runtime.v2.task/<namespace>/<id>`` (0711)
``log``             what the container writes to stdout and stderr: JSON lines with stream
                    and time (:mod:`ctrstore.runtime.logs`), written by the shim
``log.json``        runc's own log (``--log-format json``): where its errors are read from
``init.pid``        the container's init process, written by ``runc create``
``shim.pid``        the shim of a detached task, while it runs
``attach.pid``      the ``run`` process of an attached task, while it runs
``shim.log``        the shim's own output (and that of its ``--on-exit`` command)
``exit.json``       how the task ended: ``{"status": N, "exited_at": RFC 3339}``
``netns``           the container's network namespace, bind-mounted here while it is attached
                    to CNI networks (``ctrstore.network``)
``hosts``           bind-mounted on the container's ``/etc/hosts``; ``hostname`` and
                    ``resolv.conf`` likewise on ``/etc/hostname`` and ``/etc/resolv.conf``
``work/network.json``  what was set up on its networks (under ``root``: it outlives a reboot
                    that empties ``state``, so that what a reboot did not clear is torn down)
``exit.json``       how the task ended: ``{"status": N, "exited_at": RFC 3339}`` (and
                    ``"oom_killed": true`` when the kernel's OOM killer ended it)
``attach.sock``     the shim's attach socket (:mod:`ctrstore.runtime.attach`)
``restart.json``    restarts by the shim's restart policy (:mod:`ctrstore.runtime.restart`)
``stopping``        the user stopped the task (``stop``, ``kill``, ``rm -f``): no restart
==================  ==========================================================================

The shim (``shim.pid``) or the attached ``run`` (``attach.pid``) is the task's *recorder*: it
writes ``exit.json`` and then removes its pid file. A recorder that is gone without doing so
(killed, or a reboot) is how a lost task is recognised.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ctrstore._timeutil import format_rfc3339, now
from ctrstore.runtime._proc import alive_since, read_pid

__all__ = ["Bundle", "ExitRecord"]

ExitRecord = tuple[int, "str | None"]
"""``(status, exited_at)`` from ``exit.json``."""

_RECORDERS = ("shim.pid", "attach.pid")


class Bundle:
    """The bundle at ``path``; ``work`` is its work dir (by default wherever the bundle's
    ``work`` link points, which is all the shim knows)."""

    def __init__(self, path: Path, work: Path | None = None) -> None:
        self.path = path
        self.work = work if work is not None else path / "work"

    @classmethod
    def of(cls, state: Path, root: Path, namespace: str, cid: str) -> Bundle:
        """Container ``cid``'s bundle under the runtime plugin's ``state`` and ``root`` dirs."""
        return cls(state / namespace / cid, root / namespace / cid)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r})"

    # -- its files ---------------------------------------------------------------------------
    @property
    def config_json(self) -> Path:
        return self.path / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def log(self) -> Path:
        return self.path / "log"

    @property
    def log_json(self) -> Path:
        return self.path / "log.json"

    @property
    def init_pid(self) -> Path:
        return self.path / "init.pid"

    @property
    def shim_pid(self) -> Path:
        return self.path / "shim.pid"

    @property
    def attach_pid(self) -> Path:
        return self.path / "attach.pid"

    @property
    def shim_log(self) -> Path:
        return self.path / "shim.log"

    @property
    def exit_json(self) -> Path:
        return self.path / "exit.json"

    @property
    def netns(self) -> Path:
        return self.path / "netns"

    @property
    def hosts(self) -> Path:
        return self.path / "hosts"

    @property
    def hostname(self) -> Path:
        return self.path / "hostname"

    @property
    def resolv_conf(self) -> Path:
        return self.path / "resolv.conf"

    @property
    def network_record(self) -> Path:
        return self.work / "network.json"

    @property
    def restart_json(self) -> Path:
        return self.path / "restart.json"

    @property
    def stopping(self) -> Path:
        return self.path / "stopping"

    # -- making and removing it ---------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self) -> Path:
        """Make the bundle dir (0700, parents 0711), the work dir and its link, and an empty
        ``rootfs``; returns the rootfs. What exists already is kept."""
        for d in (self.path.parent.parent, self.path.parent):
            d.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.path.mkdir(mode=0o700, exist_ok=True)
        self.work.mkdir(mode=0o711, parents=True, exist_ok=True)
        link = self.path / "work"
        if not link.is_symlink():
            link.symlink_to(self.work)
        self.rootfs.mkdir(mode=0o711, exist_ok=True)
        return self.rootfs

    @property
    def tombstone(self) -> Path:
        """Where :meth:`remove` moves the bundle before removing it."""
        return self.path.with_name(f".{self.path.name}.removing")

    def remove(self) -> None:
        """Unmount the rootfs (and anything below it), then remove the bundle and work dirs.

        Other processes may write into a bundle while it is removed: ``ps`` records a lost
        task's exit status (``exit.json``) as ``rm`` removes it. So the bundle is first
        renamed out of the way (``.<id>.removing``; from then on a write by path finds
        nothing), then removed until it is gone: a write that was already under way when it
        was renamed lands in the renamed dir, and the next round removes it. A tombstone left
        by an interrupted ``remove`` is removed by the next one."""
        from ctrstore.mount import unmount

        if self.rootfs.exists():
            unmount(self.rootfs)
        tomb = self.tombstone
        for _ in range(3):
            try:
                self.path.rename(tomb)
                break
            except FileNotFoundError:
                break  # no bundle (or another remove has it)
            except OSError:
                shutil.rmtree(tomb, ignore_errors=True)  # an interrupted remove's leftover
        for d in (tomb, self.path, self.work):  # (self.path: if it could not be renamed)
            for _ in range(10):
                shutil.rmtree(d, ignore_errors=True)
                if not os.path.lexists(d):
                    break

    # -- the spec ------------------------------------------------------------------------------
    def has_spec(self) -> bool:
        return self.config_json.is_file()

    def write_spec(self, spec: Mapping[str, Any]) -> None:
        self.config_json.write_text(json.dumps(spec, indent=2))

    def wants_terminal(self) -> bool:
        """Whether the spec asks for a terminal (``process.terminal``)."""
        try:
            spec = json.loads(self.config_json.read_text())
        except (OSError, ValueError):
            return False
        return bool(spec.get("process", {}).get("terminal"))

    # -- how the task ended ----------------------------------------------------------------------
    def write_exit(self, status: int, *, oom_killed: bool = False) -> None:
        """Record the exit status (atomically: a reader sees all of it or nothing)."""
        tmp = self.path / "exit.json.tmp"
        doc: dict[str, Any] = {"status": status, "exited_at": format_rfc3339(now())}
        if oom_killed:
            doc["oom_killed"] = True
        tmp.write_text(json.dumps(doc))
        tmp.rename(self.exit_json)

    def oom_killed(self) -> bool:
        """Whether ``exit.json`` says the OOM killer ended the task."""
        try:
            return json.loads(self.exit_json.read_text()).get("oom_killed") is True
        except (OSError, ValueError, AttributeError):
            return False

    def read_exit(self) -> ExitRecord | None:
        try:
            ex = json.loads(self.exit_json.read_text())
            return int(ex["status"]), ex.get("exited_at")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def clear_recorders(self, *, exit_too: bool = False) -> None:
        """Forget an earlier task's recorders (and its exit record, with ``exit_too``)."""
        for name in (*(("exit.json",) if exit_too else ()), *_RECORDERS):
            (self.path / name).unlink(missing_ok=True)

    def recorder_alive(self) -> bool | None:
        """Whether the process that records the task's exit (shim, or attached ``run``) is
        alive; None if none was ever recorded (or it finished and said so)."""
        seen = False
        for name in _RECORDERS:
            path = self.path / name
            pid = read_pid(path)
            if not pid:
                continue
            seen = True
            if alive_since(pid, path):
                return True
        return False if seen else None

    def shim_log_tail(self) -> str:
        """The last line the shim wrote (why it died, if it died)."""
        try:
            lines = self.shim_log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""
