"""What docker's daily ``run`` flags put into the OCI spec, after :func:`ctrstore.oci.spec.generate`
has made the rest: cgroup limits (``-m``, ``--memory-swap``, ``--cpus``, ``--cpu-shares``,
``--pids-limit``), ``--ulimit``, ``--device``, ``--shm-size`` and ``--init``.

Limits are the spec's ``linux.resources``, which runc writes into the container's cgroups
(``/sys/fs/cgroup/<controller>/<cgroupsPath>`` on cgroup v1, ``/sys/fs/cgroup/<cgroupsPath>`` on
v2; :mod:`ctrstore.runtime.cgroups` reads them back). The rules are docker's:

* ``memory``: at least 6 MiB. Without ``memory_swap`` the container may use as much swap as
  memory (swap = 2 x memory); ``memory_swap`` is memory *plus* swap, at least ``memory``, and
  ``-1`` is unlimited swap. Swap limits are set only where the kernel accounts swap (cgroup v1's
  ``memory.memsw.*``, or v2), as docker drops them elsewhere.
* ``cpus``: a CFS quota of ``cpus x 100000`` µs per 100000 µs period, at most the CPUs there are.
* ``pids_limit``: ``0`` or ``-1`` is unlimited.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.errdefs import FailedPrecondition, InvalidArgument, from_oserror

if TYPE_CHECKING:
    from ctrstore.oci.spec import SpecOptions

__all__ = [
    "INIT_PATH",
    "INIT_PROGRAMS",
    "MIN_MEMORY",
    "ULIMITS",
    "DeviceMapping",
    "Resources",
    "Ulimit",
    "apply_run_options",
    "find_init",
]

MIN_MEMORY = 6 * 1024 * 1024
"""docker's smallest memory limit."""
CPU_PERIOD = 100_000
INIT_PATH = "/sbin/docker-init"
"""Where ``--init`` puts the init binary in the container (as docker and nerdctl do)."""
INIT_PROGRAMS = ("tini-static", "catatonit", "tini", "docker-init")
"""Init binaries looked for on the host, in this order: a static one works in any image."""

ULIMITS = (
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
"""The ``--ulimit`` names (``RLIMIT_<NAME>``)."""


@dataclass(frozen=True)
class Resources:
    """cgroup limits; None leaves one unset (no limit)."""

    memory: int | None = None
    """Bytes."""
    memory_swap: int | None = None
    """Bytes of memory plus swap; -1: unlimited swap."""
    memory_reservation: int | None = None
    """A soft limit in bytes (``--memory-reservation``)."""
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None

    def validate(self) -> None:
        if self.memory is not None and self.memory < MIN_MEMORY:
            raise InvalidArgument(
                f"memory limit {self.memory} bytes is too low: the minimum is 6MB ({MIN_MEMORY} bytes)"
            )
        if self.memory_swap is not None and self.memory_swap not in (-1, 0):
            if self.memory is None:
                raise InvalidArgument("--memory-swap needs --memory: set the memory limit too")
            if self.memory_swap < self.memory:
                raise InvalidArgument(
                    f"--memory-swap ({self.memory_swap} bytes) must be at least --memory "
                    f"({self.memory} bytes): it is memory plus swap"
                )
        if self.cpus is not None:
            ncpu = os.cpu_count() or 1
            if not 0.01 <= self.cpus <= ncpu:
                raise InvalidArgument(f"--cpus {self.cpus:g}: the range of CPUs is from 0.01 to {ncpu}")
        if self.cpu_shares is not None and self.cpu_shares < 0:
            raise InvalidArgument(f"--cpu-shares {self.cpu_shares}: must be 0 or more")
        if self.pids_limit is not None and self.pids_limit < -1:
            raise InvalidArgument(f"--pids-limit {self.pids_limit}: give a number of processes, or -1")

    def to_json(self, *, swap_accounting: bool = True) -> dict[str, Any]:
        """The OCI ``linux.resources`` entries (``memory``, ``cpu``, ``pids``)."""
        self.validate()
        out: dict[str, Any] = {}
        memory: dict[str, Any] = {}
        if self.memory is not None:
            memory["limit"] = self.memory
            if swap_accounting:
                if self.memory_swap in (None, 0):
                    memory["swap"] = 2 * self.memory
                else:
                    memory["swap"] = self.memory_swap
        if self.memory_reservation is not None:
            memory["reservation"] = self.memory_reservation
        if memory:
            out["memory"] = memory
        cpu: dict[str, Any] = {}
        if self.cpus is not None:
            cpu["quota"] = round(self.cpus * CPU_PERIOD)
            cpu["period"] = CPU_PERIOD
        if self.cpu_shares:
            cpu["shares"] = self.cpu_shares
        if self.cpuset_cpus:
            cpu["cpus"] = self.cpuset_cpus
        if cpu:
            out["cpu"] = cpu
        if self.pids_limit is not None:
            out["pids"] = {"limit": -1 if self.pids_limit <= 0 else self.pids_limit}
        return out


@dataclass(frozen=True)
class Ulimit:
    """``--ulimit name=soft[:hard]``."""

    name: str
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if self.name not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit {self.name!r}: use one of {', '.join(ULIMITS)}")
        if self.soft > self.hard:
            raise InvalidArgument(
                f"ulimit {self.name}: the soft limit {self.soft} is above the hard limit {self.hard}"
            )

    def to_json(self) -> dict[str, Any]:
        return {"type": f"RLIMIT_{self.name.upper()}", "hard": self.hard, "soft": self.soft}


@dataclass(frozen=True)
class DeviceMapping:
    """``--device HOST[:CONTAINER][:PERMISSIONS]``: a host device node made in the container and
    allowed by its device cgroup."""

    host_path: str
    container_path: str = ""
    permissions: str = "rwm"

    def __post_init__(self) -> None:
        if not self.permissions or set(self.permissions) - set("rwm"):
            raise InvalidArgument(
                f"device {self.host_path}: invalid permissions {self.permissions!r} (some of r, w, m)"
            )
        for p in (self.host_path, self.container_path or self.host_path):
            if not p.startswith("/"):
                raise InvalidArgument(f"device {p!r}: must be an absolute path")

    def entries(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Its ``linux.devices`` entry and its ``linux.resources.devices`` rule."""
        try:
            st = os.stat(self.host_path)
        except FileNotFoundError:
            raise InvalidArgument(f"device {self.host_path}: no such device on this host") from None
        except OSError as e:
            raise from_oserror(e, f"device {self.host_path}") from None
        if stat.S_ISCHR(st.st_mode):
            typ = "c"
        elif stat.S_ISBLK(st.st_mode):
            typ = "b"
        else:
            raise InvalidArgument(f"device {self.host_path}: not a character or block device")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        device = {
            "path": self.container_path or self.host_path,
            "type": typ,
            "major": major,
            "minor": minor,
            "fileMode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
        }
        rule = {"allow": True, "type": typ, "major": major, "minor": minor, "access": self.permissions}
        return device, rule


def find_init() -> str:
    """The host's init binary for ``--init`` (:data:`INIT_PROGRAMS`); FailedPrecondition
    naming what to install if there is none."""
    for name in INIT_PROGRAMS:
        found = shutil.which(name)
        if found:
            return found
    raise FailedPrecondition("--init needs an init binary on this host: apt-get install tini (or catatonit)")


def swap_accounting() -> bool:
    """Whether the kernel limits swap per cgroup here (docker's ``SwapLimit``)."""
    if Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists():
        return True
    try:
        controllers = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    except OSError:
        return False
    return "memory" in controllers


def _size_option(n: int) -> str:
    return f"size={n // 1024}k" if n % 1024 == 0 else f"size={n}"


def apply_run_options(spec: dict[str, Any], opts: SpecOptions) -> None:
    """Put ``opts``' resources, ulimits, devices, ``/dev/shm`` size and init into ``spec``."""
    linux = spec["linux"]
    process = spec["process"]
    if opts.resources is not None:
        linux.setdefault("resources", {}).update(opts.resources.to_json(swap_accounting=swap_accounting()))
    if opts.ulimits:
        names = {u.to_json()["type"] for u in opts.ulimits}
        seen: set[str] = set()
        for u in opts.ulimits:
            if u.name in seen:
                raise InvalidArgument(f"ulimit {u.name} given twice")
            seen.add(u.name)
        process["rlimits"] = [r for r in process.get("rlimits", []) if r["type"] not in names] + [
            u.to_json() for u in opts.ulimits
        ]
    if opts.devices and not opts.privileged:
        for d in opts.devices:
            device, rule = d.entries()
            linux.setdefault("devices", []).append(device)
            linux["resources"].setdefault("devices", []).append(rule)
    if opts.shm_size is not None:
        if opts.shm_size <= 0:
            raise InvalidArgument(f"--shm-size {opts.shm_size}: must be more than 0")
        for m in spec["mounts"]:
            if m["destination"] == "/dev/shm" and m["type"] == "tmpfs":
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [
                    _size_option(opts.shm_size)
                ]
    if opts.init is not None:
        if not os.path.isfile(opts.init):
            raise InvalidArgument(f"--init: {opts.init} is not a file")
        process["args"] = [INIT_PATH, "--", *process["args"]]
        spec["mounts"].append(
            {"destination": INIT_PATH, "type": "bind", "source": opts.init, "options": ["bind", "ro"]}
        )
