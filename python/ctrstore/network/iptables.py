"""The few iptables rules ctrstore removes itself, spelled exactly as the CNI plugins
(containernetworking/plugins 1.x) write them, so that only those rules are touched:

- a container's masquerade chain (``bridge`` with ``ipMasq``): ``CNI-<hash>`` in ``nat`` and
  its ``POSTROUTING`` jump. The bridge plugin removes them on DEL only when it finds the
  container's interface, i.e. while the namespace exists; after a reboot-like loss of the
  namespace (an emptied state dir) ctrstore removes them from the recorded result.
- a bridge's two ``same-bridge`` isolation rules of the ``firewall`` plugin, which stay as
  long as the bridge may get containers: ``network rm`` removes them with the bridge.

Rules are deleted with ``iptables -w -D`` after ``-C`` finds them; a missing iptables or rule
is not an error.
"""

from __future__ import annotations

__all__ = ["chain_name", "remove_bridge_isolation", "remove_masquerade"]

import hashlib
import shutil
import subprocess
from collections.abc import Sequence

_ISOLATION_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge)"
_TIMEOUT = 30


def chain_name(network: str, container_id: str, prefix: str = "") -> str:
    """The plugins' ``utils.MustFormatChainNameWithPrefix``: ``CNI-<prefix><sha512 hex>``
    cut to 28 characters."""
    return (f"CNI-{prefix}" + hashlib.sha512((network + container_id).encode()).hexdigest())[:28]


def _ipt(args: Sequence[str], *, v6: bool = False) -> bool:
    """Run ``iptables -w ARGS``; whether it succeeded (False without iptables)."""
    binary = shutil.which("ip6tables" if v6 else "iptables")
    if binary is None:
        return False
    try:
        r = subprocess.run([binary, "-w", *args], capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _delete(table: str, chain: str, rule: Sequence[str], *, v6: bool = False) -> None:
    for _ in range(4):  # (a rule added twice by racing writers: delete every copy)
        if not _ipt(["-t", table, "-C", chain, *rule], v6=v6):
            return
        _ipt(["-t", table, "-D", chain, *rule], v6=v6)


def remove_masquerade(network: str, container_id: str, ips: Sequence[str]) -> None:
    """What the bridge plugin's ``TeardownIPMasq`` removes for container ``container_id`` on
    ``network`` (``ips``: its addresses, ``a.b.c.d/len``)."""
    chain = chain_name(network, container_id)
    comment = f'name: "{network}" id: "{container_id}"'
    for cidr in ips:
        ip = cidr.split("/", 1)[0]
        v6 = ":" in ip
        for src in (ip, cidr):
            _delete(
                "nat", "POSTROUTING", ["-s", src, "-j", chain, "-m", "comment", "--comment", comment], v6=v6
            )
        if _ipt(["-t", "nat", "-n", "-L", chain], v6=v6):
            _ipt(["-t", "nat", "-F", chain], v6=v6)
            _ipt(["-t", "nat", "-X", chain], v6=v6)


def remove_bridge_isolation(bridge: str) -> None:
    """The firewall plugin's two ``same-bridge`` rules for ``bridge`` (IPv4 and IPv6)."""
    comment = ["-m", "comment", "--comment", _ISOLATION_COMMENT]
    for v6 in (False, True):
        _delete(
            "filter",
            "CNI-ISOLATION-STAGE-1",
            ["-i", bridge, "!", "-o", bridge, "-j", "CNI-ISOLATION-STAGE-2", *comment],
            v6=v6,
        )
        _delete("filter", "CNI-ISOLATION-STAGE-2", ["-o", bridge, "-j", "DROP", *comment], v6=v6)
