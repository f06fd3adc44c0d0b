"""A container's OCI spec and networking, rootless (issue 13).

runc detects that it runs in a user namespace and works rootless; what the spec must give up
there is decided here, as podman's rootless defaults do:

- cgroups: ordinary users get no cgroup of their own on this machine's cgroup v1 (nothing is
  delegated; on cgroup v2 ctrstore does not yet use a delegated subtree), so the spec names no
  ``cgroupsPath`` (runc then skips cgroups it cannot make)
  and carries no ``linux.resources``; limit flags (``-m``, ``--cpus``, ``--pids-limit``, ...)
  cannot apply and say so in one warning line.
- ``/sys``: sysfs can only be mounted by a user namespace that owns the network namespace; with
  ``--network host`` the host's ``/sys`` is bind-mounted read-only instead.
- networks: CNI's bridge needs root in the host's network namespace. The default network
  becomes ``slirp4netns`` (a namespace of the container's own served by slirp4netns, with
  ``-p`` forwarded by it: ``ctrstore.rootless.slirp``), as podman's rootless default; where
  slirp4netns is not installed but pasta is, ``pasta`` (``ctrstore.rootless.pasta``, podman
  5's default); where neither can serve it, ``none`` (loopback only) with a one-line note,
  and ``-p`` is refused. ``--network host``, ``none``, ``slirp4netns`` and ``pasta`` work; a
  named CNI network is refused with the reason. ``--network pasta`` is for rootless
  containers only: as root it is refused (root's containers have CNI's bridge).
- single-id mode (``ctrstore.rootless.idmap``): a process user other than 0:0 is refused
  before runc (there is no other id to run as); supplementary groups other than 0 dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ctrstore.errdefs import FailedPrecondition
from ctrstore.rootless import is_rootless, warn

__all__ = ["adapt_network", "adapt_spec", "default_network", "limits_unavailable_reason"]

_DEFAULT_NETWORK = "bridge"


def adapt_spec(spec: dict[str, Any]) -> None:
    """Make ``spec`` one runc can run in the user namespace (nothing for root)."""
    if not is_rootless():
        return
    from ctrstore.rootless.idmap import adapt_single_id

    adapt_single_id(spec)  # single-id: only 0:0 can run; devpts without gid=5
    linux = spec.setdefault("linux", {})
    linux.pop("cgroupsPath", None)
    resources = linux.pop("resources", None) or {}
    limits = sorted(k for k, v in resources.items() if k != "devices" and v)
    if limits:
        warn(f"rootless: resource limits ({', '.join(limits)}) cannot apply: {limits_unavailable_reason()}")
    netns = any(ns.get("type") == "network" for ns in linux.get("namespaces", []))
    for m in spec.get("mounts", []):
        if m.get("type") == "sysfs" and not netns:
            m.update(type="bind", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"])


def limits_unavailable_reason(mountinfo: str | None = None) -> str:
    """Why a rootless container's limits cannot apply here, from the cgroup file system mounted
    at /sys/fs/cgroup (``mountinfo``: /proc/self/mountinfo's text, read when None)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            mountinfo = ""
    fstype = next(
        (
            line.split(" - ", 1)[1].split()[0]
            for line in mountinfo.splitlines()
            if " - " in line and line.split()[4] == "/sys/fs/cgroup"
        ),
        None,
    )
    if fstype == "cgroup2":
        return (
            "this machine has cgroup v2, and ctrstore does not yet place rootless containers in a "
            "delegated cgroup (systemd's Delegate=yes); the container runs without them"
        )
    return (
        "this machine has cgroup v1 (or the hybrid layout), which is never delegated to ordinary "
        "users; the container runs without them"
    )


def default_network() -> tuple[str | None, str | None]:
    """The network a rootless container on the default network gets, or why there is none:
    slirp4netns where it can serve the user, else pasta where slirp4netns is not installed and
    pasta can serve the user."""
    import shutil

    from ctrstore.network.options import PASTA, SLIRP4NETNS
    from ctrstore.rootless import pasta, slirp

    why = slirp.unavailable_reason()
    if why is None:
        return SLIRP4NETNS, None
    if shutil.which("slirp4netns") is None:
        why_pasta = pasta.unavailable_reason()
        if why_pasta is None:
            return PASTA, None
        if shutil.which("pasta") is None:
            why = "neither slirp4netns nor pasta is installed (Debian's slirp4netns or passt package)"
        else:
            why = f"slirp4netns is not installed and for pasta {why_pasta}"
    return None, why


def adapt_network(networks: list[str], ports: int) -> list[str] | None:
    """The networks a rootless container gets instead of ``networks`` (None: as asked)."""
    from ctrstore.network.options import PASTA, SLIRP4NETNS

    if not is_rootless():
        if networks == [PASTA]:
            raise FailedPrecondition(
                "--network pasta is for rootless containers (run as an ordinary user); as root use "
                "the default bridge network (CNI), whose -p is forwarded by the portmap plugin"
            )
        return None
    if networks in (["host"], ["none"], [SLIRP4NETNS], [PASTA]):
        return None
    why = None
    if networks == [_DEFAULT_NETWORK]:
        net, why = default_network()
        if net is not None:
            return [net]
    if networks == [_DEFAULT_NETWORK] and not ports:
        print(
            f"ctrstore: note: rootless: the default bridge network needs root and {why}; this "
            "container has loopback only (--network none); use --network host to share the host's "
            "network",
            file=sys.stderr,
            flush=True,
        )
        return ["none"]
    raise FailedPrecondition(
        f"rootless: network {', '.join(networks)}"
        + (" with published ports (-p)" if ports else "")
        + " needs root (CNI)"
        + (f" and {why}" if why else "")
        + "; use --network slirp4netns (the default), pasta, none or host"
    )
