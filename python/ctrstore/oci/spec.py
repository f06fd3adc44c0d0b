"""The OCI runtime spec (``config.json``) of a container, as containerd + nerdctl generate it.

:func:`generate` starts from containerd's default Linux spec (``pkg/oci/spec.go``
``populateDefaultUnixSpec``) and applies, in nerdctl's order, the image config
(``WithImageConfigArgs``), the working directory, the tty, the user, the environment, the
network mode, user mounts, capabilities and ``--privileged``::

    spec = generate("web1", "default", image_config, SpecOptions(args=["sh"], tty=True), rootfs)
    (bundle / "config.json").write_text(json.dumps(spec))

What the defaults are:

* ``root`` is ``rootfs`` (relative to the bundle), read-only with ``read_only``.
* the process runs as uid 0 in ``/`` (or the image's ``WorkingDir``) with ``noNewPrivileges``,
  ``RLIMIT_NOFILE`` 1024/1024 and containerd's default capability set (bounding, effective and
  permitted; no inheritable or ambient ones).
* namespaces pid, ipc, uts, mount and network (no network namespace with ``net="host"``; a new
  one holds only a loopback interface, which is what nerdctl's ``--net none`` gives; a CNI
  network's namespace is set by ``ctrstore.network``, which points the spec at it);
  ``cgroupsPath`` is ``/<namespace>/<id>``, the form runc's cgroupfs driver takes.
* mounts ``/proc``, ``/dev``, ``/dev/pts``, ``/dev/shm``, ``/dev/mqueue``, ``/sys`` (ro) and
  ``/run`` with containerd's options, plus nerdctl's read-only ``/sys/fs/cgroup``; containerd's
  masked and read-only paths; a device cgroup that denies everything but nerdctl's (and
  containerd's ``WithDefaultUnixDevices``) null, zero, full, random, urandom, tty, console,
  ptmx and pts devices.

The user is resolved by :mod:`ctrstore.oci.user`, capabilities come from
:mod:`ctrstore.oci.caps`; the command line's flag grammar is in ``ctrstore.cli._run_flags`` (``-e``
and docker's run flags), ``ctrstore.client.mounts`` (``-v``, ``--mount``) and
``ctrstore.cli.network`` (``--network``, ``-p``, ...).

Not done here:

* **no seccomp profile** (``linux.seccomp`` is absent, i.e. unconfined; nerdctl would load
  containerd's default profile), no AppArmor or SELinux labels.
* ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` are **not** bind-mounted; the step
  that writes a bundle may add them.
* ``-e KEY`` without ``=`` *deletes* KEY here; a CLI that wants Docker's "take KEY from my
  environment" must expand it before calling :func:`generate`.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "OCI_VERSION",
    "NetMode",
    "SpecMount",
    "SpecOptions",
    "default_mounts",
    "generate",
    "host_devices",
    "merge_env",
    "validate_container_id",
]

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ctrstore.errdefs import InvalidArgument, from_oserror
from ctrstore.metadata.db import validate_identifier
from ctrstore.mount import Mount
from ctrstore.oci.caps import capabilities, current_capabilities
from ctrstore.oci.resources import DeviceMapping, Resources, Ulimit, apply_run_options
from ctrstore.oci.user import resolve_user

OCI_VERSION = "1.1.0"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NetMode = Literal["host", "none", "private"]

DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_NAMESPACES = ("pid", "ipc", "uts", "mount", "network")

# containerd's WithDefaultUnixDevices: (type, major, minor); minor None = any.
_DEFAULT_DEVICE_RULES: tuple[tuple[str, int, int | None], ...] = (
    ("c", 1, 3),  # /dev/null
    ("c", 1, 8),  # /dev/random
    ("c", 1, 7),  # /dev/full
    ("c", 5, 0),  # /dev/tty
    ("c", 1, 5),  # /dev/zero
    ("c", 1, 9),  # /dev/urandom
    ("c", 5, 1),  # /dev/console
    ("c", 136, None),  # /dev/pts/*
    ("c", 5, 2),  # /dev/ptmx
)


def validate_container_id(id: str) -> str:
    """``id`` if it is a valid container id (containerd's identifier rule: letters and digits
    separated by single ``.``, ``_`` or ``-``, at most 76 characters); else InvalidArgument."""
    return validate_identifier("container", id)


# --------------------------------------------------------------------------------------------
# Mounts


@dataclass(frozen=True)
class SpecMount:
    """One entry of the spec's ``mounts``: a :class:`ctrstore.mount.Mount` plus where it goes
    in the container."""

    destination: str
    source: str
    type: str = "bind"
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    def to_json(self) -> dict[str, Any]:
        """The OCI form: ``{"destination", "type", "source", "options"}``."""
        return {
            "destination": self.destination,
            "type": self.type,
            "source": self.source,
            "options": list(self.options),
        }

    def to_mount(self) -> Mount:
        """The mount without its destination."""
        return Mount(self.type, self.source, self.options)


def default_mounts() -> list[dict[str, Any]]:
    """containerd's ``defaultMounts`` (OCI JSON form), then nerdctl's ``/sys/fs/cgroup``."""

    def m(dest: str, typ: str, source: str, *options: str) -> dict[str, Any]:
        return {"destination": dest, "type": typ, "source": source, "options": list(options)}

    return [
        m("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        m("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        m("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        m("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        m("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        m("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        m("/sys/fs/cgroup", "cgroup", "cgroup", "ro", "nosuid", "noexec", "nodev"),
    ]


# --------------------------------------------------------------------------------------------
# Environment


def merge_env(base: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """containerd's ``replaceOrAppendEnvValues``: each ``K=V`` of ``overrides`` replaces the
    entry of ``base`` with key K in place, or is appended; a bare ``K`` deletes K.

    Unlike containerd, keys appended by earlier overrides are replaced or deleted by later ones
    too (``["A=1", "A=2"]`` gives ``A=2``, not both).
    """
    result: list[str | None] = list(base)
    index = {entry.partition("=")[0]: i for i, entry in enumerate(base)}
    for value in overrides:
        key, sep, _ = value.partition("=")
        i = index.get(key)
        if not sep:
            if i is not None:
                result[i] = None
            continue
        if i is None:
            index[key] = len(result)
            result.append(value)
        else:
            result[i] = value
    return [e for e in result if e is not None]


# --------------------------------------------------------------------------------------------
# Devices


def host_devices(path: str = "/dev") -> list[dict[str, Any]]:
    """The device nodes under ``path`` as ``linux.devices`` entries (containerd's
    ``HostDevices``, used by ``--privileged``): char and block devices, not fifos, skipping
    ``pts``, ``shm``, ``fd``, ``mqueue`` and ``console``."""
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        raise from_oserror(e, f"listing devices in {path}") from None
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"):
                out.extend(host_devices(entry.path))
            continue
        if entry.name == "console":
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISCHR(st.st_mode):
            typ = "c"
        elif stat.S_ISBLK(st.st_mode):
            typ = "b"
        else:
            continue
        out.append(
            {
                "path": entry.path,
                "type": typ,
                "major": os.major(st.st_rdev),
                "minor": os.minor(st.st_rdev),
                "fileMode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# What the caller adds


@dataclass
class SpecOptions:
    """What ``nerdctl run`` flags add to the image's config.

    ``env`` entries are ``K=V`` (set) or ``K`` (delete). ``net``: ``host`` shares the host's
    network namespace; ``none`` and ``private`` give a new one with only loopback.
    ``cap_add``/``cap_drop`` take names with or without ``CAP_``, or ``ALL``.
    """

    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cwd: str | None = None
    user: str | None = None
    hostname: str | None = None
    tty: bool = False
    read_only: bool = False
    net: NetMode = "private"
    mounts: list[SpecMount] = field(default_factory=list)
    privileged: bool = False
    cgroups_path: str | None = None
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    # docker's daily run flags, put in by ctrstore.oci.resources.apply_run_options:
    entrypoint: list[str] | None = None
    """Replaces the image's Entrypoint (``[]`` clears it); the image's Cmd is then not used."""
    resources: Resources | None = None
    ulimits: list[Ulimit] = field(default_factory=list)
    devices: list[DeviceMapping] = field(default_factory=list)
    shm_size: int | None = None
    """Bytes of ``/dev/shm`` (default 64 MiB)."""
    init: str | None = None
    """The host path of an init binary (tini) to run the command under (``--init``)."""


# --------------------------------------------------------------------------------------------
# The image config: the one place its runtime fields (Env, Entrypoint, Cmd, WorkingDir, User)
# are read and checked.


@dataclass(frozen=True)
class _ImageConfig:
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str
    user: str


def _image_config(image_config: Mapping[str, Any]) -> _ImageConfig:
    """The runtime part of an image config: accepts the whole config blob (with ``config``)
    or only its ``config`` object."""
    inner = image_config.get("config") if "config" in image_config else image_config
    if inner is None:
        inner = {}
    if not isinstance(inner, Mapping):
        raise InvalidArgument(f"image config: 'config' must be an object, got {inner!r}")

    def strings(key: str) -> tuple[str, ...]:
        value = inner.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"image config: {key!r} must be a list of strings, got {value!r}")
        return tuple(value)

    def string(key: str) -> str:
        value = inner.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidArgument(f"image config: {key!r} must be a string, got {value!r}")
        return value

    return _ImageConfig(
        strings("Env"), strings("Entrypoint"), strings("Cmd"), string("WorkingDir"), string("User")
    )


# --------------------------------------------------------------------------------------------
# The spec


def _mounts(opts: SpecOptions) -> tuple[list[dict[str, Any]], str | None]:
    """Default mounts with the user's on top (a user mount replaces a default one at the same
    destination, as Docker does) and the rootfs propagation the user's mounts need."""
    seen: set[str] = set()
    for m in opts.mounts:
        if m.type == "volume":
            raise InvalidArgument(
                f"mount {m.destination}: a volume mount is made a bind mount of the volume by "
                "ContainerManager.create (ctrstore.client.volumes), not by generate"
            )
        if m.destination in seen:
            raise InvalidArgument(f"duplicate mount point {m.destination}")
        seen.add(m.destination)
    mounts = [m for m in default_mounts() if m["destination"] not in seen]
    mounts.extend(m.to_json() for m in opts.mounts)
    propagation = None
    options = {o for m in opts.mounts for o in m.options}
    if options & {"shared", "rshared"}:
        propagation = "shared"
    elif options & {"slave", "rslave"}:
        propagation = "rslave"
    return mounts, propagation


def generate(
    container_id: str,
    namespace: str,
    image_config: Mapping[str, Any],
    opts: SpecOptions,
    rootfs: Path,
) -> dict[str, Any]:
    """The OCI runtime spec (``config.json`` as a dict) of container ``container_id`` in
    ``namespace``, run from an image with config ``image_config`` (the config blob or its
    ``config`` object) whose root file system is mounted at ``rootfs`` (read only to look up
    users; the spec's ``root.path`` is ``rootfs``, relative to the bundle).

    * args: Entrypoint + (``opts.args`` if any, else Cmd); none at all is InvalidArgument.
    * env: the image's Env (or ``PATH=...`` if it has none), then ``TERM=xterm`` with a tty,
      then ``opts.env``, then ``HOSTNAME=<hostname>`` (nerdctl), merged by :func:`merge_env`.
    * cwd: ``opts.cwd``, else WorkingDir, else ``/``; it must be absolute.
    * user: ``opts.user``, else the image's User, resolved by :func:`resolve_user`.
    * hostname: ``opts.hostname``, else the first 12 characters of the id; with
      ``net="host"`` the host's name (nerdctl).
    * ``entrypoint``, resources, ulimits, devices, ``/dev/shm``'s size and ``init``: as docker's
      run flags, by :func:`ctrstore.oci.resources.apply_run_options`.
    * ``privileged``: all of this process's capabilities, no masked or read-only paths,
      writable ``/sys`` and ``/sys/fs/cgroup``, every host device, ``noNewPrivileges`` false;
      ``cap_add``/``cap_drop`` are then ignored (as Docker and nerdctl do).
    """
    validate_container_id(container_id)
    validate_identifier("namespace", namespace)
    if opts.net not in get_args(NetMode):
        raise InvalidArgument(f"network mode {opts.net!r} is not supported (use host, none or private)")
    cfg = _image_config(image_config)

    if opts.entrypoint is None:
        args = [*cfg.entrypoint, *(opts.args or cfg.cmd)]
    else:  # docker's --entrypoint: the image's Cmd goes with the Entrypoint it replaces
        args = [*opts.entrypoint, *opts.args]
    if not args:
        raise InvalidArgument(
            "no command specified: the image has neither Entrypoint nor Cmd, give a command to run"
        )

    if opts.cwd:
        if not opts.cwd.startswith("/"):
            raise InvalidArgument(f"working directory {opts.cwd!r} must be an absolute path")
        cwd = opts.cwd
    else:
        cwd = cfg.working_dir or "/"
        if not cwd.startswith("/"):
            raise InvalidArgument(f"the image's WorkingDir {cwd!r} is not an absolute path")

    if opts.hostname:
        hostname = opts.hostname
    elif opts.net == "host":
        hostname = os.uname().nodename  # gethostname(2) on Linux
    else:
        hostname = container_id[:12]

    env = merge_env(cfg.env or (DEFAULT_PATH_ENV,), ())
    if opts.tty:
        env = merge_env(env, ["TERM=xterm"])
    env = merge_env(env, [*opts.env, f"HOSTNAME={hostname}"])

    user = resolve_user(rootfs, opts.user or cfg.user)

    mounts, propagation = _mounts(opts)

    namespaces = [{"type": t} for t in _NAMESPACES if not (t == "network" and opts.net == "host")]
    devices_cgroup: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for typ, major, minor in _DEFAULT_DEVICE_RULES:
        rule: dict[str, Any] = {"allow": True, "type": typ, "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        devices_cgroup.append(rule)

    linux: dict[str, Any] = {
        "resources": {"devices": devices_cgroup},
        "cgroupsPath": opts.cgroups_path or f"/{namespace}/{container_id}",
        "namespaces": namespaces,
        "maskedPaths": list(DEFAULT_MASKED_PATHS),
        "readonlyPaths": list(DEFAULT_READONLY_PATHS),
    }
    if propagation is not None:
        linux["rootfsPropagation"] = propagation

    if opts.privileged:
        caps = current_capabilities()
        del linux["maskedPaths"], linux["readonlyPaths"]
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = host_devices()
        for m in mounts:
            if m["type"] in ("sysfs", "cgroup"):
                m["options"] = ["rw" if o == "ro" else o for o in m["options"]]
    else:
        caps = capabilities(opts.cap_add, opts.cap_drop)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": opts.tty,
            "user": user.to_json(),
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": not opts.privileged,
        },
        "root": {"path": "rootfs", "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    apply_run_options(spec, opts)
    from ctrstore.rootless.spec import adapt_spec

    adapt_spec(spec)  # rootless: no cgroups, /sys bound (ctrstore.rootless.spec)
    return spec
