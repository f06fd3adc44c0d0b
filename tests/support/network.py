"""Networks made for tests, and what a test checks is gone after a container.

A test network has its own conflist directory, bridge (``ct<hex>``), subnet (a free /24 in
10.200-250.x.0, none a route of the host covers) and host-local directory, so that test runs
of several people on one machine cannot meet, and no test touches the machine's default
network (``ctrstore0``). :func:`remove_test_network` takes away what the network left: its
bridge, the firewall plugin's isolation rules for it, and its files. Tests send traffic only to
127.0.0.1 and to the containers they made.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctrstore.network.conflist import NetworkStore, host_routes
from ctrstore.network.iptables import chain_name, remove_bridge_isolation

__all__ = [
    "CNI_BIN",
    "NETWORK_MARKS",
    "ScratchNetwork",
    "allocations",
    "bridge_ports",
    "cni_available",
    "free_subnet",
    "http_get",
    "iptables_rules",
    "leftovers",
    "make_test_network",
    "remove_test_network",
]

CNI_BIN = Path("/usr/lib/cni")


def cni_available() -> str | None:
    """Why networking tests cannot run here, or None."""
    for plugin in ("bridge", "host-local", "portmap", "firewall", "tuning", "loopback"):
        if not (CNI_BIN / plugin).exists():
            return f"CNI plugin {plugin} is not installed (apt-get install containernetworking-plugins)"
    for tool in ("iptables", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


NETWORK_MARKS = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
    pytest.mark.skipif(cni_available() is not None, reason=str(cni_available())),
]
"""What every test module of containers on CNI networks needs (``pytestmark = NETWORK_MARKS``)."""


@dataclass(frozen=True)
class ScratchNetwork:
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    conf_dir: Path
    ipam_dir: Path

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)


def free_subnet() -> ipaddress.IPv4Network:
    """A random /24 in 10.200-250.x.0 that no route of the host covers."""
    used = host_routes()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free test subnet in 10.200.0.0-10.250.255.255")


def make_test_network(base: Path, name: str = "bridge") -> ScratchNetwork:
    """Write network ``name`` (by default the default network's name, so that containers
    use it unasked) into ``base/net.d``, on a bridge and subnet of its own."""
    tn = ScratchNetwork(name, f"ct{secrets.token_hex(5)}", free_subnet(), base / "net.d", base / "ipam")
    store = NetworkStore(tn.conf_dir, str(tn.ipam_dir))
    store.write(store.bridge_conflist(name, bridge=tn.bridge, subnet=tn.subnet))
    return tn


def remove_test_network(tn: ScratchNetwork) -> None:
    """Remove the network's bridge (and, with it, any veth left on it), its isolation rules
    and its files."""
    subprocess.run(["ip", "link", "delete", tn.bridge], capture_output=True, timeout=30, check=False)
    remove_bridge_isolation(tn.bridge)
    shutil.rmtree(tn.conf_dir, ignore_errors=True)
    shutil.rmtree(tn.ipam_dir, ignore_errors=True)


def iptables_rules() -> list[str]:
    """Every rule and chain of the IPv4 and IPv6 tables (``iptables-save``)."""
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            r = subprocess.run([tool], capture_output=True, text=True, timeout=30, check=False)
            out += [
                line for line in r.stdout.splitlines() if line and not line.startswith(("#", "*", "COMMIT"))
            ]
    return out


def bridge_ports(bridge: str) -> list[str]:
    """The interfaces (veths) on ``bridge``."""
    r = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return [line.split(":")[1].strip() for line in r.stdout.splitlines() if ":" in line]


def allocations(tn: ScratchNetwork, network: str | None = None) -> list[str]:
    """host-local's allocations on the network: the files named by an address."""
    d = tn.ipam_dir / (network or tn.name)
    if not d.is_dir():
        return []
    return sorted(
        p.name for p in d.iterdir() if p.name != "lock" and not p.name.startswith("last_reserved_ip")
    )


def leftovers(
    tn: ScratchNetwork, cni_id: str, ips: list[str], store: Path, network: str | None = None
) -> list[str]:
    """What a container (``cni_id``: ``<namespace>-<id>``, with addresses ``ips``) left on the
    test network: veths on the bridge, iptables rules naming its id, addresses or chains,
    host-local allocations, network namespaces mounted under the store."""
    net = network or tn.name
    marks = [
        f'id: \\"{cni_id}\\"',
        chain_name(net, cni_id),
        chain_name(net, cni_id, "DN-"),
    ]  # (as -save quotes)
    marks += [f"{ip}/32" for ip in ips] + [f" {ip} " for ip in ips] + [f"{ip}:" for ip in ips]
    found = [f"veth {v}" for v in bridge_ports(tn.bridge)]
    found += [f"rule {r}" for r in iptables_rules() if any(m in r + " " for m in marks)]
    found += [f"allocation {a}" for a in allocations(tn, net)]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if " nsfs " in line and str(store) in line]
    return found


def http_get(url: str, timeout: float = 10) -> str:
    """GET ``url`` (127.0.0.1 or a test container), retrying while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
