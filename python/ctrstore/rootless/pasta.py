"""A rootless container's network served by pasta (Debian's ``passt`` package), as podman does
it (podman 5's rootless default; here ``--network pasta``, and the default where slirp4netns
is not installed).

pasta, like slirp4netns, is a user-mode TCP/IP stack on a TAP device in the container's own
network namespace, turning its packets into ordinary sockets of the user on the host; unlike
slirp4netns it copies the host's addresses into the namespace (the address and gateway of the
host's default-route interface, so the container's address is the host's) and takes the
published ports on its command line. Everything a namespace and its helper share with
slirp4netns — the namespace on ``<bundle>/netns``, the record with pasta as its *helper*,
the teardown on the shim's final exit, ``rm``, ``start``, ``gc`` and ``check --repair``, and
``check`` reporting a pasta that died — is ``ctrstore.rootless.usernet``'s. Here:

1. ``pasta --config-net --ns-ifname eth0 --no-map-gw --dns-forward 169.254.1.1 -T none -U none
   -t ... -u ... --pid <bundle>/pasta.pid --netns <bundle>/netns`` (podman's options): it
   configures ``eth0`` in the namespace, forks into the background once it is ready (its
   first process exits 0) and writes the daemon's pid; its errors before that are in
   ``<bundle>/pasta.log``. ``--no-map-gw``: the gateway is the host's router, not the host,
   so the container cannot reach the host's loopback services; ``-T none -U none``: no ports of
   the host are forwarded into the container.
2. each ``-p [IP:]HOST:CONTAINER[/udp]`` as pasta's ``-t``/``-u`` ``[IP/]HOST:CONTAINER``: pasta
   listens on the host port as the user (ports below ``net.ipv4.ip_unprivileged_port_start``
   are refused) and connects to the container's port; without ``-p``, ``-t none -u none`` (by
   default pasta would forward every port the container binds).
3. the addresses pasta gave ``eth0`` are read from the namespace (for ``/etc/hosts``,
   ``inspect``); ``/etc/resolv.conf`` names 169.254.1.1 (unless ``--dns``), which pasta
   forwards to the host's first resolver — a loopback one (127.0.0.53) included.

pasta opens ``/dev/net/tun`` in the namespace as the user: the device must be usable by others
(mode 0666, Debian's default with systemd's udev rules), as for slirp4netns. As root, pasta is
refused (``ctrstore.rootless.spec``): root's containers have CNI's bridge.
"""

from __future__ import annotations

__all__ = ["DNS_FORWARD", "IFNAME", "PASTA_NETWORK", "setup", "unavailable_reason"]

import contextlib
import ctypes
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.errdefs import FailedPrecondition, Unavailable
from ctrstore.network.options import PASTA as PASTA_NETWORK

if TYPE_CHECKING:
    from ctrstore.network import NetworkOptions, PortMapping
    from ctrstore.network.attach import Record
    from ctrstore.network.manager import NetPaths, NetworkManager

IFNAME = "eth0"
DNS_FORWARD = "169.254.1.1"
"""The address whose DNS queries pasta forwards to the host's resolver (podman 5's)."""
PID_FILE = "pasta.pid"
LOG = "pasta.log"
READY_SECONDS = 10.0

_CLONE_NEWNET = 0x40000000
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_SIOCGIFHWADDR = 0x8927


def unavailable_reason() -> str | None:
    """Why pasta cannot serve this user's containers (None: it can)."""
    from ctrstore.rootless.usernet import helper_unavailable

    return helper_unavailable("pasta", "pasta is not installed (Debian's passt package)")


def setup(
    manager: NetworkManager, namespace: str, cid: str, opts: NetworkOptions, paths: NetPaths, hostname: str
) -> Record:
    """Before the task is created: tear down what an earlier task left, make the namespace,
    start pasta on it with the published ports and write the record and the container's
    ``/etc`` files (``ctrstore.rootless.usernet.serve``). On a failure nothing is left set up."""
    from ctrstore.network.attach import Attachment
    from ctrstore.rootless.usernet import serve

    why = unavailable_reason()
    if why is not None:
        raise FailedPrecondition(f"--network pasta: {why} (or use --network slirp4netns, none or host)")
    exe = shutil.which("pasta")
    assert exe is not None

    def start(ns: Path, ports: list[PortMapping], record: Record) -> None:
        record.helper = _start(exe, ns, ports)
        addr, prefix, gateway, mac = _probe(ns)
        result: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": IFNAME, "mac": mac, "sandbox": str(ns)}],
            "ips": [{"address": f"{addr}/{prefix}", "gateway": gateway, "interface": 0}] if addr else [],
            "dns": {"nameservers": [DNS_FORWARD]},
        }
        # No CNI plugin runs for it (an empty plugin list): the record says what pasta set up.
        conflist: dict[str, Any] = {"cniVersion": "1.0.0", "name": PASTA_NETWORK, "plugins": []}
        record.attachments = [Attachment(PASTA_NETWORK, IFNAME, conflist, result=result)]

    return serve(manager, namespace, cid, opts, paths, hostname, network=PASTA_NETWORK, start=start)


def port_args(ports: list[PortMapping]) -> list[str]:
    """pasta's ``-t``/``-u`` arguments for the published ports: ``[IP/]HOST:CONTAINER`` each
    (``none`` for a protocol with none: pasta's default, ``auto``, would forward every port the
    container binds)."""
    out: dict[str, list[str]] = {"tcp": [], "udp": []}
    for p in ports:
        where = f"{p.host_ip}/" if p.host_ip else ""
        out[p.protocol].append(f"{where}{p.host_port}:{p.container_port}")
    args = []
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        for spec in out[proto] or ["none"]:
            args += [flag, spec]
    return args


def _start(exe: str, ns: Path, ports: list[PortMapping]) -> dict[str, Any]:
    """Start pasta on the namespace at ``ns``; it forks into the background once the namespace
    is configured and its ports are bound (its first process exits 0) and writes the daemon's
    pid to ``pasta.pid`` beside ``ns``. The helper entry for the record."""
    from ctrstore.runtime._proc import process_start_time

    bundle = ns.parent
    pid_file = bundle / PID_FILE
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    argv = [
        exe,
        "--config-net",
        "--quiet",
        "--ns-ifname",
        IFNAME,
        "--no-map-gw",
        "--dns-forward",
        DNS_FORWARD,
        "-T",
        "none",
        "-U",
        "none",
        *port_args(ports),
        "--pid",
        str(pid_file),
        "--netns",
        str(ns),
    ]
    why = ""
    try:
        with open(bundle / LOG, "wb") as log:
            r = subprocess.run(
                argv,
                cwd=bundle,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                timeout=READY_SECONDS,
                check=False,
            )
        if r.returncode != 0:
            why = f"exit status {r.returncode}"
    except subprocess.TimeoutExpired:
        why = f"not ready within {READY_SECONDS:.0f} s"
    except OSError as e:
        raise Unavailable(f"cannot run {exe}: {e.strerror}") from None
    pid = 0
    if not why:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().split()[0])
        start = process_start_time(pid) if pid > 0 else None
        if start is not None:
            return {"name": "pasta", "pid": pid, "start": start}
        why = "its daemon is not running"
    out = [
        line
        for line in (bundle / LOG).read_text(errors="replace").splitlines()
        if line.strip() and "to syslog" not in line  # (pasta's complaints of no syslog socket)
    ]
    raise Unavailable(f"pasta could not set up the container's network: {' / '.join(out[-3:]) or why}")


def _probe(ns: Path) -> tuple[str, int, str, str]:
    """The IPv4 address, prefix length and MAC of ``eth0`` in the namespace at ``ns``, and its
    default gateway (what pasta copied from the host): from a short-lived thread that joins
    the namespace (setns moves only that thread). Empty strings for what is not there."""
    found: list[tuple[str, int, str, str]] = []
    failure: list[OSError] = []

    def probe() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(ns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                failure.append(OSError(e, f"joining network namespace {ns}: {os.strerror(e)}"))
                return
        finally:
            os.close(fd)
        ifreq = struct.pack("256s", IFNAME.encode())
        addr, prefix, mac = "", 0, ""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with contextlib.suppress(OSError):
                addr = socket.inet_ntoa(fcntl.ioctl(s, _SIOCGIFADDR, ifreq)[20:24])
                mask = fcntl.ioctl(s, _SIOCGIFNETMASK, ifreq)[20:24]
                prefix = bin(int.from_bytes(mask, "big")).count("1")
            with contextlib.suppress(OSError):
                mac = fcntl.ioctl(s, _SIOCGIFHWADDR, ifreq)[18:24].hex(":")
        gateway = ""
        routes = Path(f"/proc/self/task/{threading.get_native_id()}/net/route")
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in routes.read_text().splitlines()[1:]:
                f = line.split()
                if f[0] == IFNAME and f[1] == "00000000":
                    gateway = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
                    break
        found.append((addr, prefix, gateway, mac))

    t = threading.Thread(target=probe, name="ctrstore-pasta-probe")
    t.start()
    t.join()
    if failure:
        raise Unavailable(str(failure[0]))
    return found[0] if found else ("", 0, "", "")
