"""Networks: CNI network configuration lists (*conflists*) in one directory, as nerdctl keeps
them (``/etc/ctrstore/cni/net.d`` by default; ``NETCONFPATH`` or the network plugin's
``conf_dir``).

Every ``*.conflist`` (and single-plugin ``*.conf``/``*.json``) file there is a network, named
by its ``name``; ``host`` and ``none`` are pseudo-networks with no file. The networks ctrstore
makes are nerdctl's bridge networks::

    {"cniVersion": "1.0.0", "name": "bridge", "ctrstoreID": "<sha256 of the name>",
     "ctrstoreLabels": {}, "plugins": [
       {"type": "bridge", "bridge": "ctrstore0", "isGateway": true, "ipMasq": true,
        "hairpinMode": true, "ipam": {"type": "host-local", "ranges": [[{"subnet":
        "10.4.0.0/24", "gateway": "10.4.0.1"}]], "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "/run/ctrstore/cni/networks"}},
       {"type": "portmap", "capabilities": {"portMappings": true}},
       {"type": "firewall", "ingressPolicy": "same-bridge"},
       {"type": "tuning"}]}

in ``ctrstore-<name>.conflist``. The default network (``bridge``, on bridge ``ctrstore0``,
subnet ``10.4.0.0/24``) is written the first time it is needed. Other networks get the
bridge ``br-<first 12 hex digits of their id>`` and, unless given one, the first free /24
from ``10.4.1.0/24`` on (free: no other network here uses it and no route of the host
covers it). host-local keeps its allocations in ``dataDir`` (``<dataDir>/<network>/<ip>``);
ctrstore puts them on /run, so that a reboot, which ends every container, frees them too.
"""

from __future__ import annotations

import builtins

__all__ = [
    "DEFAULT_NETWORK",
    "PSEUDO_NETWORKS",
    "Network",
    "NetworkStore",
    "host_routes",
    "network_id",
    "validate_network_name",
]

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, from_oserror

DEFAULT_NETWORK = "bridge"
PSEUDO_NETWORKS = ("host", "none")
FILE_PREFIX = "ctrstore-"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
_BRIDGE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")
_EXTENSIONS = (".conflist", ".conf", ".json")
MAX_CONFLIST_SIZE = 1 << 20
FIRST_SUBNET = ipaddress.IPv4Network("10.4.1.0/24")
"""Where subnets of new networks are looked for (nerdctl's ``StartingCIDR``), up to 10.255/16."""


def network_id(name: str) -> str:
    """A network's id, as nerdctl's: the hex SHA-256 of its name."""
    return hashlib.sha256(name.encode()).hexdigest()


def validate_network_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(
            f"invalid network name {name!r}: letters, digits, '_', '.' and '-', starting with a letter "
            "or digit, at most 128 characters"
        )
    if name in PSEUDO_NETWORKS:
        raise InvalidArgument(f"network name {name!r} is reserved (a pre-defined network)")
    return name


def validate_bridge_name(name: str) -> str:
    if not _BRIDGE.match(name):
        raise InvalidArgument(
            f"invalid bridge name {name!r}: at most 15 letters, digits, '_', '.' or '-' "
            "(a Linux interface name)"
        )
    return name


@dataclass(frozen=True)
class Network:
    """One network: its name, the file it is read from (None for ``host`` and ``none``) and
    its conflist."""

    name: str
    file: Path | None
    conflist: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        own = self.conflist.get("ctrstoreID") or self.conflist.get("nerdctlID")
        return own if isinstance(own, str) and own else network_id(self.name)

    @property
    def pseudo(self) -> bool:
        return self.file is None

    @property
    def managed(self) -> bool:
        """Made by ctrstore (``network rm`` removes only those)."""
        return "ctrstoreID" in self.conflist

    @property
    def labels(self) -> dict[str, str]:
        labels = self.conflist.get("ctrstoreLabels")
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}

    @property
    def plugins(self) -> builtins.list[Mapping[str, Any]]:
        plugins = self.conflist.get("plugins")
        return [p for p in plugins if isinstance(p, Mapping)] if isinstance(plugins, list) else []

    @property
    def driver(self) -> str:
        return (
            str(self.plugins[0].get("type", ""))
            if self.plugins
            else ("host" if self.name == "host" else "null")
        )

    @property
    def bridge(self) -> str | None:
        """The bridge interface of a ``bridge`` network (CNI's default, ``cni0``, if unnamed)."""
        if self.plugins and self.plugins[0].get("type") == "bridge":
            return str(self.plugins[0].get("bridge") or "cni0")
        return None

    @property
    def ipam_ranges(self) -> builtins.list[dict[str, str]]:
        """host-local's ranges: ``{"subnet", "gateway", "rangeStart", "rangeEnd"}`` each."""
        if not self.plugins:
            return []
        ipam = self.plugins[0].get("ipam")
        if not isinstance(ipam, Mapping):
            return []
        out: builtins.list[dict[str, str]] = []
        ranges = ipam.get("ranges")
        if isinstance(ranges, list):
            for rs in ranges:
                for r in rs if isinstance(rs, list) else []:
                    if isinstance(r, Mapping) and isinstance(r.get("subnet"), str):
                        out.append({k: str(v) for k, v in r.items() if isinstance(v, str)})
        elif isinstance(ipam.get("subnet"), str):
            out.append(
                {k: str(ipam[k]) for k in ("subnet", "gateway", "rangeStart", "rangeEnd") if k in ipam}
            )
        return out

    @property
    def subnets(self) -> builtins.list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for r in self.ipam_ranges:
            with contextlib.suppress(ValueError):
                out.append(ipaddress.ip_network(r["subnet"], strict=False))
        return out

    @property
    def ipam_data_dir(self) -> Path | None:
        """Where host-local keeps this network's allocations (``<dataDir>/<name>``)."""
        if not self.plugins:
            return None
        ipam = self.plugins[0].get("ipam")
        if not isinstance(ipam, Mapping) or ipam.get("type") != "host-local":
            return None
        return Path(str(ipam.get("dataDir") or "/var/lib/cni/networks")) / self.name

    def has_plugin(self, plugin: str) -> bool:
        return any(p.get("type") == plugin for p in self.plugins)


def _conflist_from(doc: Any, path: Path) -> dict[str, Any]:
    """A conflist from a file's JSON: a list as it is, a single plugin's ``.conf`` as a list
    of one (as libcni's ``ConfListFromConf``)."""
    if not isinstance(doc, dict):
        raise InvalidArgument(f"network file {path}: not a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"network file {path}: no 'name'")
    if "plugins" in doc:
        if not isinstance(doc["plugins"], list) or not doc["plugins"]:
            raise InvalidArgument(f"network file {path}: 'plugins' must be a non-empty list")
        for p in doc["plugins"]:
            if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
                raise InvalidArgument(f"network file {path}: every plugin needs a 'type'")
        return doc
    if not isinstance(doc.get("type"), str) or not doc["type"]:
        raise InvalidArgument(f"network file {path}: neither 'plugins' nor 'type'")
    plugin = {k: v for k, v in doc.items() if k not in ("name", "cniVersion")}
    return {"cniVersion": doc.get("cniVersion", "1.0.0"), "name": name, "plugins": [plugin]}


def host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations the host routes (``/proc/net/route``), default route excluded."""
    out = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            dest = ipaddress.IPv4Address(int(f[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(f[7], 16).to_bytes(4, "little"))
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        except ValueError:
            continue
        if net.prefixlen:
            out.append(net)
    return out


class NetworkStore:
    """The networks of one conflist directory."""

    def __init__(self, conf_dir: Path, ipam_dir: str) -> None:
        self.conf_dir = conf_dir
        self.ipam_dir = ipam_dir

    # -- reading -----------------------------------------------------------------------------
    def _files(self) -> builtins.list[Path]:
        try:
            return sorted(p for p in self.conf_dir.iterdir() if p.suffix in _EXTENSIONS and p.is_file())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise from_oserror(e, f"reading network directory {self.conf_dir}") from None

    def _read(self, path: Path) -> Network:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFLIST_SIZE + 1)
        except OSError as e:
            raise from_oserror(e, f"reading network file {path}") from None
        if len(data) > MAX_CONFLIST_SIZE:
            raise InvalidArgument(f"network file {path}: larger than {MAX_CONFLIST_SIZE} bytes")
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise InvalidArgument(f"network file {path}: not valid JSON: {e}") from None
        conflist = _conflist_from(doc, path)
        return Network(conflist["name"], path, conflist)

    def _walk(self) -> Iterator[Network]:
        """Every network file (the first file of a name wins, as libcni's lookup by name:
        files in lexical order)."""
        seen: set[str] = set()
        for path in self._files():
            net = self._read(path)
            if net.name not in seen:
                seen.add(net.name)
                yield net

    def list(self) -> builtins.list[Network]:
        """Every network, ``host`` and ``none`` included, by name."""
        nets = {n.name: n for n in self._walk()}
        for p in PSEUDO_NETWORKS:
            nets.setdefault(p, Network(p, None))
        return sorted(nets.values(), key=lambda n: n.name)

    def get(self, ref: str) -> Network:
        """A network by name, id or unique id prefix (at least 3 characters)."""
        if ref in PSEUDO_NETWORKS:
            return Network(ref, None)
        nets = list(self._walk())
        for n in nets:
            if n.name == ref:
                return n
        if len(ref) >= 3:
            found = [n for n in nets if n.id.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(
                    f"{len(found)} networks have an id starting with {ref!r}: give more of it"
                )
        raise NotFound(f"no such network: {ref} (networks are read from {self.conf_dir})")

    # -- writing -----------------------------------------------------------------------------
    def bridge_conflist(
        self,
        name: str,
        *,
        bridge: str,
        subnet: ipaddress.IPv4Network,
        gateway: ipaddress.IPv4Address | None = None,
        ip_range: ipaddress.IPv4Network | None = None,
        internal: bool = False,
        mtu: int = 0,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """nerdctl's bridge network: bridge (gateway, masquerade, hairpin) with host-local,
        portmap, firewall (``same-bridge``: other bridges cannot reach it) and tuning. An
        ``internal`` network has no gateway, masquerade or published ports."""
        hosts = subnet.num_addresses
        if subnet.prefixlen > 30 or hosts < 4:
            raise InvalidArgument(f"subnet {subnet} is too small (at most a /30)")
        gw = gateway or subnet.network_address + 1
        if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
            raise InvalidArgument(f"gateway {gw} is not a host address of subnet {subnet}")
        rng: dict[str, str] = {"subnet": str(subnet), "gateway": str(gw)}
        if ip_range is not None:
            if not ip_range.subnet_of(subnet):
                raise InvalidArgument(f"ip range {ip_range} is not inside subnet {subnet}")
            first = max(ip_range.network_address, subnet.network_address + 1)
            last = min(ip_range.broadcast_address, subnet.broadcast_address - 1)
            rng["rangeStart"], rng["rangeEnd"] = str(first), str(last)
        ipam: dict[str, Any] = {"type": "host-local", "ranges": [[rng]]}
        if not internal:
            ipam["routes"] = [{"dst": "0.0.0.0/0"}]
        ipam["dataDir"] = self.ipam_dir
        br: dict[str, Any] = {
            "type": "bridge",
            "bridge": validate_bridge_name(bridge),
            "isGateway": not internal,
            "ipMasq": not internal,
            "hairpinMode": True,
            "ipam": ipam,
        }
        if mtu:
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"invalid MTU {mtu} (68-65535)")
            br["mtu"] = mtu
        plugins: builtins.list[dict[str, Any]] = [br]
        if not internal:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        plugins += [{"type": "firewall", "ingressPolicy": "same-bridge"}, {"type": "tuning"}]
        return {
            "cniVersion": "1.0.0",
            "name": name,
            "ctrstoreID": network_id(name),
            "ctrstoreLabels": dict(labels or {}),
            "plugins": plugins,
        }

    def used_subnets(self) -> builtins.list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out: builtins.list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(host_routes())
        for n in self._walk():
            out.extend(n.subnets)
        return out

    def free_subnet(self) -> ipaddress.IPv4Network:
        """The first /24 from 10.4.1.0/24 on that no network or route uses."""
        used = self.used_subnets()
        candidate = FIRST_SUBNET
        last = ipaddress.IPv4Address("10.255.255.0")
        while candidate.network_address <= last:
            if not any(candidate.overlaps(u) for u in used if u.version == 4):
                return candidate
            candidate = ipaddress.IPv4Network((int(candidate.network_address) + 256, 24))
        raise FailedPrecondition("no free /24 subnet left in 10.4.1.0-10.255.255.255: give one with --subnet")

    def write(self, conflist: Mapping[str, Any]) -> Network:
        """Write a new network's file, ``ctrstore-<name>.conflist``; AlreadyExists if a
        network of that name exists (the file appears whole or not at all)."""
        name = str(conflist["name"])
        with contextlib.suppress(NotFound):
            existing = self.get(name)
            raise AlreadyExists(f"network {name!r} already exists ({existing.file})")
        try:
            self.conf_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.conf_dir)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(conflist, f, indent=2)
                    f.write("\n")
                os.chmod(tmp, 0o644)
                final = self.conf_dir / f"{FILE_PREFIX}{name}.conflist"
                try:
                    os.link(tmp, final)  # fails if another process wrote it first
                except FileExistsError:
                    raise AlreadyExists(f"network {name!r} already exists ({final})") from None
            finally:
                os.unlink(tmp)
        except OSError as e:
            raise from_oserror(e, f"writing network {name!r} into {self.conf_dir}") from None
        return Network(name, final, dict(conflist))

    def remove_file(self, net: Network) -> None:
        if net.file is None:
            raise InvalidArgument(f"{net.name!r} is a pre-defined network and cannot be removed")
        if not net.managed:
            raise FailedPrecondition(
                f"network {net.name!r} ({net.file}) was not made by ctrstore: remove its file yourself"
            )
        try:
            net.file.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise from_oserror(e, f"removing network file {net.file}") from None
