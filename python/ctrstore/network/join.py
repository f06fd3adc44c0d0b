"""``--network container:NAME``: a container that joins the network namespace of another,
running, container (docker's and nerdctl's), as docker does it:

- its spec's network namespace is the other's: the other's ``<bundle>/netns`` when the other
  has one (CNI, slirp4netns, pasta: a bind mount made again at each of its starts, at the same
  path, so the path written at create stays right across restarts of the other), else the other
  task's ``/proc/<pid>/ns/net`` (a container on ``--network none``, or made without network
  options), written again into the bundle's spec at each start (:func:`point_spec_at`). The
  other on ``--network host`` makes the joiner a host-network one.
- it shares the other's ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` (bind
  mounts of the other's bundle files) and gets its host name;
- it has no CNI attachment and no record of its own: nothing is ADDed for it, and its exit or
  removal tears nothing down (the namespace is the other's).

The other must be running when the joiner is created and at each of its starts
(FailedPrecondition naming it). Removing the other while a joiner runs is allowed, as docker
allows ``rm -f`` of it: the other's networking is torn down as always (its interfaces are
deleted, the bind mount of the namespace removed) and the joiner keeps a namespace with
loopback only until it stops; its next start fails clearly as the other is gone.
"""

from __future__ import annotations

__all__ = ["Joined", "joined_netns", "point_spec_at", "set_netns", "share_files"]

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.errdefs import FailedPrecondition, from_oserror

if TYPE_CHECKING:
    from ctrstore.network.manager import NetPaths


@dataclass(frozen=True)
class Joined:
    """The container a joiner joins: its id, the name users know it by, its host name, its
    bundle's network paths, its network mode (``cni``, ``none``, ``host``...; ``""``: made
    without network options) and its task's pid (0: not running)."""

    id: str
    name: str
    hostname: str
    paths: NetPaths
    mode: str
    pid: int


def joined_netns(other: Joined) -> str | None:
    """The network namespace path a joiner of ``other`` uses now (None: the host's, the other
    being on ``--network host``); FailedPrecondition if ``other`` does not run (no task, or
    its namespace is no longer mounted)."""
    from ctrstore.network.netns import is_netns

    not_running = FailedPrecondition(
        f"--network container:{other.name}: container {other.name} is not running "
        "(start it first: a container joins the network namespace of a running one)"
    )
    pid = other.pid
    if not pid:
        raise not_running
    if other.mode == "host":
        return None
    if other.mode in ("cni", "slirp4netns", "pasta"):
        if not is_netns(Path(other.paths.netns)):
            raise not_running
        return str(other.paths.netns)
    return f"/proc/{pid}/ns/net"


def share_files(spec: dict[str, Any], other: NetPaths) -> bool:
    """Bind-mount ``other``'s ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` into
    ``spec`` (a user's ``-v`` over one wins); False if the other has no such files (made without
    network options: the joiner keeps its image's)."""
    files = (
        ("/etc/hosts", other.hosts),
        ("/etc/hostname", other.hostname),
        ("/etc/resolv.conf", other.resolv_conf),
    )
    if not all(Path(src).is_file() for _, src in files):
        return False
    taken = {m.get("destination") for m in spec.get("mounts", [])}
    for dest, src in files:
        if dest not in taken:
            spec.setdefault("mounts", []).append(
                {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rprivate"]}
            )
    return True


def set_netns(spec: dict[str, Any], path: str | None) -> bool:
    """Point ``spec``'s network namespace at ``path`` (None: the host's, no network namespace);
    whether the spec changed."""
    linux = spec.setdefault("linux", {})
    namespaces: list[dict[str, Any]] = linux.setdefault("namespaces", [])
    for i, ns in enumerate(namespaces):
        if ns.get("type") == "network":
            if path is None:
                del namespaces[i]
                return True
            if ns.get("path") == path:
                return False
            ns["path"] = path
            return True
    if path is None:
        return False
    namespaces.append({"type": "network", "path": path})
    return True


def point_spec_at(config_json: Path, path: str | None) -> None:
    """At a joiner's start: make its bundle's spec use network namespace ``path`` (the other
    task's ``/proc/<pid>/ns/net`` changes with each of its starts)."""
    try:
        spec = json.loads(config_json.read_text())
        if set_netns(spec, path):
            tmp = config_json.with_name(f".{config_json.name}.tmp")
            tmp.write_text(json.dumps(spec, indent=2))
            tmp.rename(config_json)
    except OSError as e:
        raise from_oserror(e, f"updating {config_json}") from None
