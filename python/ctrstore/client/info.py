"""``system info`` and ``version``: what ``docker info``/``nerdctl info`` and ``docker
version`` tell, for a store with no daemon — where it lives, which snapshotter and runtime it
uses, which plugins work here, how many containers, images and volumes the namespace has,
and the machine. Field names are docker's where docker has the field (``Containers``,
``Driver``, ``DockerRootDir`` is ``RootDir`` here, ``NCPU``, ``MemTotal``, ...)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.images.platforms import host

if TYPE_CHECKING:
    from ctrstore.client.client import Client
    from ctrstore.config import Config

__all__ = ["SystemInfo", "VersionInfo", "runtime_version", "system_info", "version_info"]

_TIMEOUT = 10


def runtime_version(binary: str) -> str:
    """The OCI runtime's version (``runc --version``'s first line's last word), "" if it
    cannot be asked."""
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""
    return first.split()[-1] if first else ""


def _cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class VersionInfo:
    version: str
    core_version: str
    python_version: str
    os: str
    arch: str
    kernel: str
    runtime: str
    runtime_path: str
    runtime_version: str

    def to_json(self) -> dict[str, Any]:
        """docker version's shape: ``Client`` and ``Server`` (no daemon: the server is this
        process), with the runtime as a component."""
        components: list[dict[str, Any]] = [{"Name": "ctrstore", "Version": self.version}]
        components.append(
            {"Name": self.runtime, "Version": self.runtime_version, "Details": {"Path": self.runtime_path}}
        )
        return {
            "Client": {
                "Version": self.version,
                "CoreVersion": self.core_version,
                "PythonVersion": self.python_version,
                "Os": self.os,
                "Arch": self.arch,
            },
            "Server": {
                "Components": components,
                "Version": self.version,
                "Os": self.os,
                "Arch": self.arch,
                "KernelVersion": self.kernel,
            },
        }


def version_info(config: Config) -> VersionInfo:
    """Versions of ctrstore, its Rust core and the configured OCI runtime (no store is opened)."""
    from ctrstore import __version__
    from ctrstore._core import __version__ as core

    path = shutil.which(config.runtime) or ""
    plat = host()
    return VersionInfo(
        __version__,
        core,
        platform.python_version(),
        plat.os,
        plat.architecture,
        platform.release(),
        config.runtime,
        path,
        runtime_version(path) if path else "",
    )


@dataclass(frozen=True)
class SystemInfo:
    namespace: str
    root: str
    state: str
    config_file: str | None
    snapshotter: str
    runtime: str
    runtime_path: str
    runtime_version: str
    containers: int
    running: int
    paused: int
    stopped: int
    images: int
    volumes: int
    schema_version: int
    plugins: list[dict[str, str]] = field(default_factory=list)
    """Every plugin: ``Type``, ``ID``, ``Status`` (ok, skip, error), ``Error``."""
    version: VersionInfo | None = None
    warnings: list[str] = field(default_factory=list)
    id_mapping: str = "root"
    """``root``, ``subids`` (rootless, the user's subordinate ids) or ``single-id`` (rootless,
    one id: image owners kept in the ``user.rootlesscontainers`` xattr)."""

    def ok_plugins(self, type_: str) -> list[str]:
        return [p["ID"] for p in self.plugins if p["Type"] == type_ and p["Status"] == "ok"]

    def to_json(self) -> dict[str, Any]:
        """``docker info``'s fields (``RootDir``/``StateDir`` for ``DockerRootDir``; plugins
        as docker groups them, and each one's status in ``PluginStatus``)."""
        v = self.version
        return {
            "ID": "",
            "Containers": self.containers,
            "ContainersRunning": self.running,
            "ContainersPaused": self.paused,
            "ContainersStopped": self.stopped,
            "Images": self.images,
            "Volumes": self.volumes,
            "Namespace": self.namespace,
            "Driver": self.snapshotter,
            "Plugins": {
                "Storage": self.ok_plugins("io.containerd.snapshotter.v1"),
                "Volume": self.ok_plugins("io.containerd.volume.v1"),
                "Network": self.ok_plugins("io.containerd.network.v1"),
                "Log": ["json-file"],
            },
            "PluginStatus": self.plugins,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": _cgroup_version(),
            "Runtimes": {self.runtime: {"path": self.runtime_path, "version": self.runtime_version}},
            "DefaultRuntime": self.runtime,
            "KernelVersion": platform.release(),
            "OperatingSystem": _os_name(),
            "OSType": v.os if v else "linux",
            "Architecture": platform.machine(),
            "NCPU": os.cpu_count() or 0,
            "MemTotal": _mem_total(),
            "Name": platform.node(),
            "ServerVersion": v.version if v else "",
            "RootDir": self.root,
            "StateDir": self.state,
            "ConfigFile": self.config_file,
            "MetadataSchemaVersion": self.schema_version,
            "IdMapping": self.id_mapping,
            "Warnings": self.warnings,
        }


def system_info(client: Client) -> SystemInfo:
    """``system info`` for the client's store and namespace. Plugins that fail are listed
    with their errors (and in ``warnings``), not raised, so the command reports a broken
    store instead of failing on it."""
    plugins = [
        {"Type": p.registration.type, "ID": p.registration.id, "Status": p.status, "Error": p.error or ""}
        for p in client.plugins
    ]
    warnings = [f"plugin {p['Type']}.{p['ID']}: {p['Error']}" for p in plugins if p["Status"] == "error"]
    running = paused = stopped = images = volumes = schema = 0
    containers = 0
    try:
        md = client.metadata
        schema = md.db.schema_version
        images = len(client.images.list())
        mgr = client.containers
        records = mgr.store.list()
        containers = len(records)
        for c in records:
            s = mgr.status(c.id).status
            if s == "running":
                running += 1
            elif s == "paused":
                paused += 1
            else:
                stopped += 1
        vols = client._volumes_or_none()
        volumes = len(vols.list()) if vols is not None else 0
    except Exception as e:  # a broken store is what info is asked about: say so, do not fail
        warnings.append(f"the store cannot be read: {e}")
    v = version_info(client.config)
    from ctrstore.rootless.idmap import mode

    id_mapping = mode()
    if id_mapping == "single-id":
        warnings.append(
            "rootless with a single id: image owners are kept in the user.rootlesscontainers xattr "
            "and only root processes can run; add subordinate ids to /etc/subuid and /etc/subgid"
        )
    return SystemInfo(
        namespace=client.namespace,
        root=str(client.root),
        state=str(client.state),
        config_file=client.config.source,
        snapshotter=client.config.snapshotter,
        runtime=client.config.runtime,
        runtime_path=v.runtime_path,
        runtime_version=v.runtime_version,
        containers=containers,
        running=running,
        paused=paused,
        stopped=stopped,
        images=images,
        volumes=volumes,
        schema_version=schema,
        plugins=plugins,
        version=v,
        warnings=warnings,
        id_mapping=id_mapping,
    )
