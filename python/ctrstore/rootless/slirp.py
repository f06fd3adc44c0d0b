"""A rootless container's network: slirp4netns, as podman's rootless default (issue 13).

CNI's bridge needs root in the host's network namespace; slirp4netns needs nothing but a TAP
device in the container's own namespace: it is a user-mode TCP/IP stack that turns the
container's packets into ordinary sockets of the user on the host. So a rootless container on
the default network gets, before its task is created (the ``before_create`` of its start,
``client/networks.py``'s ``Attacher``):

1. a new network namespace bind-mounted on ``<bundle>/netns`` (made inside the user's user
   namespace, which owns it, and mounted in the pause process's mount namespace, where every
   later command of the user sees it);
2. ``slirp4netns --configure --mtu=65520 --disable-host-loopback --api-socket
   <bundle>/slirp.sock --netns-type=path <bundle>/netns tap0``, detached in a session of its
   own (it outlives the command that started it): ``tap0`` with 10.0.2.100/24, the gateway
   10.0.2.2, slirp's DNS forwarder 10.0.2.3; the container cannot reach the host's loopback;
3. each ``-p HOST:CONTAINER`` forwarded by slirp4netns (``add_hostfwd`` on its API socket):
   slirp4netns listens on the host port as the user (so ports below
   ``net.ipv4.ip_unprivileged_port_start`` are refused) and connects to the container;
4. the network record (``network.json``, as for CNI: ``ctrstore.network.attach``) with the
   namespace, the ports and slirp4netns's pid as the namespace's *helper*: the shim's
   final-exit teardown, ``rm``, ``start``, ``gc`` and ``check --repair`` kill it and unmount
   the namespace from the record alone; ``check`` reports a helper that died;
5. ``/etc/resolv.conf`` naming 10.0.2.3 (unless ``--dns``), ``/etc/hosts`` with 10.0.2.100.

slirp4netns opens ``/dev/net/tun`` as the user: the device must be usable by others (mode
0666, Debian's default with systemd's udev rules); where it is not, the start fails with
slirp4netns's own message.
"""

from __future__ import annotations

__all__ = [
    "DNS",
    "GATEWAY",
    "GUEST_IP",
    "IFNAME",
    "SLIRP_NETWORK",
    "unavailable_reason",
    "setup",
]

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.errdefs import FailedPrecondition, Unavailable
from ctrstore.network.options import SLIRP4NETNS as SLIRP_NETWORK

if TYPE_CHECKING:
    from ctrstore.network import NetworkOptions, PortMapping
    from ctrstore.network.attach import Record
    from ctrstore.network.manager import NetPaths, NetworkManager

IFNAME = "tap0"
GUEST_IP = "10.0.2.100"
PREFIX = 24
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
MTU = 65520
API_SOCKET = "slirp.sock"
LOG = "slirp4netns.log"
READY_SECONDS = 10.0


def unavailable_reason() -> str | None:
    """Why slirp4netns cannot serve this user's containers (None: it can)."""
    from ctrstore.rootless.usernet import helper_unavailable

    return helper_unavailable("slirp4netns", "slirp4netns is not installed")


def setup(
    manager: NetworkManager, namespace: str, cid: str, opts: NetworkOptions, paths: NetPaths, hostname: str
) -> Record:
    """Before the task is created: tear down what an earlier task left, make the namespace,
    start slirp4netns on it, forward the published ports and write the record and the
    container's ``/etc`` files (``ctrstore.rootless.usernet.serve``). On a failure nothing is
    left set up."""
    from ctrstore.network.attach import Attachment
    from ctrstore.rootless.usernet import serve

    exe = shutil.which("slirp4netns")
    if exe is None:
        raise FailedPrecondition(
            "rootless networking needs slirp4netns: install Debian's slirp4netns package "
            "(or use --network pasta, none or host)"
        )

    def start(ns: Path, ports: list[PortMapping], record: Record) -> None:
        record.helper = _start(exe, ns)
        for p in ports:
            _add_hostfwd(ns.parent, p)
        result: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": IFNAME, "sandbox": str(ns)}],
            "ips": [{"address": f"{GUEST_IP}/{PREFIX}", "gateway": GATEWAY, "interface": 0}],
            "dns": {"nameservers": [DNS]},
        }
        # No CNI plugin runs for it (an empty plugin list): the record says what slirp4netns set up.
        conflist: dict[str, Any] = {"cniVersion": "1.0.0", "name": SLIRP_NETWORK, "plugins": []}
        record.attachments = [Attachment(SLIRP_NETWORK, IFNAME, conflist, result=result)]

    return serve(manager, namespace, cid, opts, paths, hostname, network=SLIRP_NETWORK, start=start)


def _start(exe: str, ns: Path) -> dict[str, Any]:
    """Start slirp4netns on the namespace at ``ns`` in its own session (it outlives this
    command), wait until it says the namespace is configured; its helper entry for the
    record. Its API socket is ``slirp.sock`` beside ``ns`` (given relative to its working
    directory: the bundle's path is longer than a socket address may be)."""
    from ctrstore.network.attach import stop_helper
    from ctrstore.runtime._proc import process_start_time

    bundle = ns.parent
    with contextlib.suppress(FileNotFoundError):
        (bundle / API_SOCKET).unlink()
    ready_r, ready_w = os.pipe()
    argv = [
        exe,
        "--configure",
        f"--mtu={MTU}",
        "--disable-host-loopback",
        "--api-socket",
        API_SOCKET,
        f"--ready-fd={ready_w}",
        "--netns-type=path",
        str(ns),
        IFNAME,
    ]
    try:
        with open(bundle / LOG, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=bundle,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(ready_w,),
                start_new_session=True,
            )
        os.close(ready_w)
        ready_w = -1
        helper = {"name": "slirp4netns", "pid": proc.pid, "start": process_start_time(proc.pid)}
        deadline = time.monotonic() + READY_SECONDS
        ready = b""
        while not ready and time.monotonic() < deadline:
            r, _, _ = select.select([ready_r], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            ready = os.read(ready_r, 1)
            if not ready:  # EOF: it exited
                break
        if ready != b"1":
            with contextlib.suppress(Exception):
                stop_helper(helper)
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
            out = (bundle / LOG).read_text(errors="replace").strip().splitlines()
            why = " / ".join(out[-3:]) or f"not ready within {READY_SECONDS:.0f} s"
            raise Unavailable(f"slirp4netns could not set up the container's network: {why}")
        # (It is not waited for here: its parent exits, or reaps it with the others it started.)
        proc.returncode = 0
        return helper
    finally:
        os.close(ready_r)
        if ready_w >= 0:
            os.close(ready_w)


def _add_hostfwd(bundle: Path, p: PortMapping) -> None:
    """``add_hostfwd`` of ``p`` on slirp4netns's API socket (reached through a descriptor of
    the bundle: its full path may be longer than a socket address)."""
    request = {
        "execute": "add_hostfwd",
        "arguments": {
            "proto": p.protocol,
            "host_addr": p.host_ip or "0.0.0.0",
            "host_port": p.host_port,
            "guest_port": p.container_port,
        },
    }
    dfd = os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(f"/proc/self/fd/{dfd}/{API_SOCKET}")
            s.sendall(json.dumps(request).encode())
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
    except OSError as e:
        raise Unavailable(f"publish {p}: slirp4netns's API socket: {e}") from None
    finally:
        os.close(dfd)
    try:
        doc = json.loads(answer)
    except ValueError:
        doc = {"error": {"desc": answer.decode(errors="replace") or "no answer"}}
    if not isinstance(doc, dict) or "error" in doc or "return" not in doc:
        err = doc.get("error") if isinstance(doc, dict) else doc
        desc = err.get("desc", err) if isinstance(err, dict) else err
        raise Unavailable(f"publish {p}: slirp4netns refused to forward the port: {desc}")
