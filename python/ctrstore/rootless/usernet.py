"""What a rootless container's user-mode network shares, whichever helper serves it
(slirp4netns: ``ctrstore.rootless.slirp``, pasta: ``ctrstore.rootless.pasta``).

Both give the container a network namespace of its own (bind-mounted on ``<bundle>/netns``,
made inside the user's user namespace, which owns it, and mounted in the pause process's mount
namespace, where every later command of the user sees it), served by one process of the user
that turns the container's packets into ordinary sockets on the host and listens on the
published host ports. The network record (``network.json``, as for CNI:
``ctrstore.network.attach``) names the namespace, the ports and that process as the namespace's
*helper*; the shim's final-exit teardown, ``rm``, ``start``, ``gc`` and ``check --repair`` stop
it and unmount the namespace from the record alone, and ``check`` reports a helper that died.
Only how the helper is started and told the ports differs: :func:`serve` does the rest.
"""

from __future__ import annotations

__all__ = ["TUN", "Starter", "helper_unavailable", "serve"]

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ctrstore.errdefs import InvalidArgument

TUN = "/dev/net/tun"
"""The device both helpers open as the user: it must be mode 0666 (Debian's default)."""

if TYPE_CHECKING:
    from ctrstore.network import NetworkOptions, PortMapping
    from ctrstore.network.attach import Record
    from ctrstore.network.manager import NetPaths, NetworkManager

Starter = Callable[[Path, "list[PortMapping]", "Record"], None]
"""Starts the helper on the namespace at its first argument with the published ports (host
ports chosen) and fills the record: ``helper`` as soon as there is a process to stop (a failure
after that is cleaned up by :func:`serve`), and the one attachment with its CNI-like result
(addresses, gateway, ``dns.nameservers``)."""


def helper_unavailable(program: str, missing: str) -> str | None:
    """Why ``program`` cannot serve this user's containers (None: it can): not installed
    (``missing`` says so, with its Debian package), or ``/dev/net/tun`` not readable and
    writable by the user (uid 0 of the user's namespace has no rights over the host root's
    device)."""
    if shutil.which(program) is None:
        return missing
    if not os.access(TUN, os.R_OK | os.W_OK):
        return f"{TUN} is not usable by this user (as root: chmod 0666 {TUN})"
    return None


def serve(
    manager: NetworkManager,
    namespace: str,
    cid: str,
    opts: NetworkOptions,
    paths: NetPaths,
    hostname: str,
    *,
    network: str,
    start: Starter,
) -> Record:
    """Before the task is created: tear down what an earlier task left, make the namespace,
    have ``start`` serve it and forward the published ports, write the record and the
    container's ``/etc`` files (``resolv.conf`` naming the helper's DNS unless ``--dns``). On a
    failure nothing is left set up: no record, no helper process, no namespace."""
    from ctrstore.network import netns
    from ctrstore.network.attach import Record, detach, stop_helper
    from ctrstore.network.manager import cni_container_id

    manager.teardown(paths)
    for p in opts.ports:
        if p.protocol not in ("tcp", "udp"):
            raise InvalidArgument(f"publish {p}: {network} forwards tcp and udp only")
    ports = manager._host_ports(opts.ports, skip=paths.network_record)
    record = Record(cni_container_id(namespace, cid), str(paths.netns), [], [], list(ports))
    netns.create(paths.netns)
    try:
        start(paths.netns, list(ports), record)
        record.save(paths.network_record)
        dns = [
            str(s)
            for att in record.networks()
            for s in ((att.result or {}).get("dns") or {}).get("nameservers") or []
        ]
        manager.write_files(replace(opts, dns=list(opts.dns) or dns), paths, hostname, record)
    except BaseException:
        if paths.network_record.exists():
            with contextlib.suppress(Exception):
                detach(paths.network_record)
        if record.helper is not None:
            with contextlib.suppress(Exception):
                stop_helper(record.helper)
        with contextlib.suppress(Exception):
            netns.remove(paths.netns)
        raise
    return record
