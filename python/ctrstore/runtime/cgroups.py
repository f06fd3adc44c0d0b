"""A container's cgroups, found from the spec's ``linux.cgroupsPath`` as runc's cgroupfs driver
places them, and what ``stats`` and the shim read from them.

- cgroup v1 (and the hybrid layout, v1 controllers plus an empty ``unified`` v2 tree, as on
  this project's machines): ``<mount of controller>/<cgroupsPath>`` for each controller
  (``/sys/fs/cgroup/memory/default/web``);
- cgroup v2 (unified): one directory, ``/sys/fs/cgroup/<cgroupsPath>``.

Only absolute cgroupsPaths (``/<namespace>/<id>``, what :mod:`ctrstore.oci.spec` writes) are
understood; systemd's ``slice:prefix:name`` form is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CgroupStats", "Cgroups", "cgroups_path_of"]


def cgroups_path_of(spec: Any) -> str | None:
    linux = spec.get("linux") if isinstance(spec, dict) else None
    path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    if not isinstance(path, str) or not path.startswith("/") or ":" in path:
        return None
    return path


@dataclass(frozen=True)
class CgroupStats:
    cpu_ns: int | None = None
    """CPU time used, all CPUs together."""
    memory_usage: int | None = None
    """Bytes in use, page cache that could be dropped (inactive file) not counted, as docker."""
    memory_limit: int | None = None
    """The limit in bytes; None when there is none."""
    pids: int | None = None
    pids_limit: int | None = None
    block_read: int | None = None
    block_write: int | None = None
    oom_kills: int = 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


# A v1 memory limit this large or larger means "none" (the kernel's PAGE_COUNTER_MAX, page
# aligned: 9223372036854771712 on 4 KiB pages).
_V1_UNLIMITED = 1 << 62


class Cgroups:
    """The cgroup directories of ``cgroups_path`` on this machine."""

    def __init__(self, cgroups_path: str) -> None:
        from ctrstore.mount import mountinfo

        self.path = cgroups_path
        self.v1: dict[str, Path] = {}
        self.v2: Path | None = None
        for m in mountinfo():
            rel = self.path.lstrip("/")
            if m.fstype == "cgroup":
                for opt in m.super_options.split(","):
                    if opt in ("memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "devices", "cpuset"):
                        self.v1[opt] = Path(m.mount_point) / rel
            elif m.fstype == "cgroup2":
                ctrl = _read(Path(m.mount_point) / "cgroup.controllers") or ""
                # The hybrid layout's "unified" tree has no controllers: v1 holds them.
                if "memory" in ctrl.split() or self.v2 is None:
                    self.v2 = Path(m.mount_point) / rel
        if "memory" in self.v1:
            self.unified = False
        else:
            self.unified = self.v2 is not None

    def dirs(self) -> list[Path]:
        """Every directory of the container's cgroups that exists."""
        found = [*self.v1.values(), *([self.v2] if self.v2 is not None else [])]
        return [d for d in dict.fromkeys(found) if d.is_dir()]

    def file(self, controller: str, name: str) -> Path | None:
        """``name`` in the container's cgroup of ``controller`` (v1), or in its one v2 dir."""
        if self.unified:
            return None if self.v2 is None else self.v2 / name
        d = self.v1.get(controller)
        return None if d is None else d / name

    def oom_kills(self) -> int:
        """How many processes of the container the OOM killer has killed."""
        if self.unified:
            return _keyed(self.v2 / "memory.events").get("oom_kill", 0) if self.v2 else 0
        d = self.v1.get("memory")
        return _keyed(d / "memory.oom_control").get("oom_kill", 0) if d else 0

    def stats(self) -> CgroupStats:
        if self.unified:
            return self._stats_v2()
        return self._stats_v1()

    def _stats_v1(self) -> CgroupStats:
        mem = self.v1.get("memory")
        usage = limit = None
        if mem is not None:
            usage = _int(mem / "memory.usage_in_bytes")
            if usage is not None:
                usage -= _keyed(mem / "memory.stat").get("total_inactive_file", 0)
                usage = max(usage, 0)
            limit = _int(mem / "memory.limit_in_bytes")
            if limit is not None and limit >= _V1_UNLIMITED:
                limit = None
        cpu = self.v1.get("cpuacct")
        pids = self.v1.get("pids")
        read = write = None
        blk = self.v1.get("blkio")
        if blk is not None:
            for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"):
                text = _read(blk / name)
                if text is None:
                    continue
                read = write = 0
                for line in text.splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[2].isdigit():
                        if parts[1] == "Read":
                            read += int(parts[2])
                        elif parts[1] == "Write":
                            write += int(parts[2])
                break
        pids_limit = _int(pids / "pids.max") if pids else None
        return CgroupStats(
            cpu_ns=_int(cpu / "cpuacct.usage") if cpu else None,
            memory_usage=usage,
            memory_limit=limit,
            pids=_int(pids / "pids.current") if pids else None,
            pids_limit=pids_limit,
            block_read=read,
            block_write=write,
            oom_kills=self.oom_kills(),
        )

    def _stats_v2(self) -> CgroupStats:
        d = self.v2
        if d is None:
            return CgroupStats()
        cpu = _keyed(d / "cpu.stat").get("usage_usec")
        usage = _int(d / "memory.current")
        if usage is not None:
            usage = max(usage - _keyed(d / "memory.stat").get("inactive_file", 0), 0)
        read = write = 0
        for line in (_read(d / "io.stat") or "").splitlines():
            for field in line.split()[1:]:
                k, _, v = field.partition("=")
                if k == "rbytes" and v.isdigit():
                    read += int(v)
                elif k == "wbytes" and v.isdigit():
                    write += int(v)
        return CgroupStats(
            cpu_ns=None if cpu is None else cpu * 1000,
            memory_usage=usage,
            memory_limit=_int(d / "memory.max"),
            pids=_int(d / "pids.current"),
            pids_limit=_int(d / "pids.max"),
            block_read=read,
            block_write=write,
            oom_kills=self.oom_kills(),
        )
