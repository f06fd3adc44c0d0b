"""What a container asks of the network (``run``'s network flags), recorded with the
container (the ``ctrstore.io/network`` extension of its record) and set up at each start."""

from __future__ import annotations

__all__ = [
    "CONTAINER_PREFIX",
    "HOST_GATEWAY",
    "PASTA",
    "SLIRP4NETNS",
    "NetworkOptions",
    "parse_add_host",
    "parse_expose",
    "parse_mac",
]

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ctrstore.errdefs import InvalidArgument
from ctrstore.network.conflist import DEFAULT_NETWORK, PSEUDO_NETWORKS
from ctrstore.network.ports import PROTOCOLS, PortMapping, parse_publish

HOST_GATEWAY = "host-gateway"
"""``--add-host NAME:host-gateway``: the address of the host on the container's (first)
network, as docker's special value."""

SLIRP4NETNS = "slirp4netns"
"""A rootless container's network: a namespace of its own served by slirp4netns
(``ctrstore.rootless.slirp``), as podman's rootless default; its ports are forwarded by it."""

PASTA = "pasta"
"""A rootless container's network served by pasta (``ctrstore.rootless.pasta``), podman 5's
rootless default; the default here where slirp4netns is not installed."""

CONTAINER_PREFIX = "container:"
"""``--network container:NAME_OR_ID``: join another running container's network namespace
(docker's); recorded as ``container:<full id>`` once the name is resolved at create."""

_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,253})$")


def parse_add_host(spec: str) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or ``NAME=IP``; IP may be IPv6 or ``host-gateway``)."""
    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if not name or not ip:
        raise InvalidArgument(f"add-host {spec!r}: expected NAME:IP")
    if not _HOSTNAME.match(name):
        raise InvalidArgument(f"add-host {spec!r}: invalid host name {name!r}")
    if ip != HOST_GATEWAY:
        ip = ip.removeprefix("[").removesuffix("]")
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise InvalidArgument(f"add-host {spec!r}: invalid IP address {ip!r}") from None
    return name, ip


def parse_expose(spec: str) -> list[tuple[int, str]]:
    """``--expose PORT[-PORT][/PROTO]`` (docker's): the container ports, as ``(port,
    protocol)``, that ``-P`` publishes besides the image's ``ExposedPorts``."""
    body, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"expose {spec!r}: unknown protocol {proto!r} (use tcp, udp or sctp)")
    lo_text, _, hi_text = body.partition("-")
    if not lo_text.isdigit() or (hi_text and not hi_text.isdigit()):
        raise InvalidArgument(f"expose {spec!r}: expected PORT[-PORT][/PROTOCOL]")
    lo, hi = int(lo_text), int(hi_text or lo_text)
    if not 1 <= lo <= hi <= 65535:
        raise InvalidArgument(f"expose {spec!r}: invalid port or range (1-65535, start before end)")
    return [(p, proto) for p in range(lo, hi + 1)]


def _conflicts(opts: NetworkOptions) -> None:
    """docker's "conflicting options" of ``--network container:``: the joined container's
    namespace, ``/etc`` files and host name are its own, so nothing of them can be asked."""
    what = [
        (bool(opts.ports) or opts.publish_all, "port publishing and the container type network mode"),
        (bool(opts.expose), "port exposing and the container type network mode"),
        (opts.ip is not None, "ip address and the container type network mode"),
        (bool(opts.dns or opts.dns_search or opts.dns_options), "dns and the network mode"),
        (bool(opts.add_hosts), "custom host-to-IP mapping and the network mode"),
        (opts.mac_address is not None, "mac-address and the network mode"),
    ]
    for given, words in what:
        if given:
            raise InvalidArgument(f"conflicting options: {words}")


_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")


def parse_mac(mac: str) -> str:
    """``--mac-address``: six hex octets (``02:42:ac:11:00:02``, or with ``-``), a unicast
    address (the lowest bit of the first octet clear); returned lower case with ``:``."""
    if not _MAC.match(mac):
        raise InvalidArgument(
            f"--mac-address {mac!r}: {mac} is not a valid mac address (e.g. 02:42:ac:11:00:02)"
        )
    norm = mac.replace("-", ":").lower()
    if int(norm[:2], 16) & 1:
        raise InvalidArgument(
            f"--mac-address {mac}: a multicast address (the first octet is odd); give a unicast one, "
            "e.g. 02:42:ac:11:00:02"
        )
    if norm == "00:00:00:00:00:00":
        raise InvalidArgument(f"--mac-address {mac}: the all-zero address is not a valid interface address")
    return norm


def _strings(obj: dict[str, Any], key: str) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"network options: {key!r} must be a list of strings")
    return list(value)


@dataclass
class NetworkOptions:
    """A container's networking, as ``docker run`` flags give it.

    ``networks``: ``["host"]`` (the host's namespace), ``["none"]`` (loopback only), or the
    names of CNI networks (default: the default network, ``bridge``), attached as ``eth0``,
    ``eth1``, ... ``ports``: published ports (``-p``), ``ip``: the address on the first
    network (``--ip``), ``add_hosts``: ``(name, ip)`` lines of ``/etc/hosts``, and ``dns``,
    ``dns_search``, ``dns_options`` for ``/etc/resolv.conf``. The host name is the spec's."""

    networks: list[str] = field(default_factory=lambda: [DEFAULT_NETWORK])
    ports: list[PortMapping] = field(default_factory=list)
    ip: str | None = None
    add_hosts: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    publish_all: bool = False
    """``-P``: publish every exposed port (the image's ``ExposedPorts`` and ``expose``) on a
    free host port; at create they become ``ports`` with host port 0 (:meth:`with_exposed`)."""
    expose: list[tuple[int, str]] = field(default_factory=list)
    """``--expose``: container ports (``(port, protocol)``) exposed besides the image's."""
    mac_address: str | None = None
    """``--mac-address``: the MAC of ``eth0`` (the first network's interface), set by the
    network's ``tuning`` plugin (``CNI_ARGS`` ``MAC=``, and its ``mac`` capability)."""

    @classmethod
    def from_flags(
        cls,
        networks: Sequence[str] = (),
        *,
        publish: Sequence[str] = (),
        ip: str | None = None,
        add_hosts: Sequence[str] = (),
        dns: Sequence[str] = (),
        dns_search: Sequence[str] = (),
        dns_options: Sequence[str] = (),
        publish_all: bool = False,
        expose: Sequence[str] = (),
        mac_address: str | None = None,
    ) -> NetworkOptions:
        """The options ``run``'s network flags give, checked: ``--network`` (repeated;
        none given is the default network, ``bridge``; ``private``, the old name of a
        namespace with loopback only, is ``none``), ``-p``, ``--ip``, ``--add-host``,
        ``--dns``, ``--dns-search``, ``--dns-option``, ``-P``/``--publish-all``, ``--expose``,
        ``--mac-address`` (``--network container:NAME`` keeps its name; the container is looked up at create).
        The CLI's ``run``/``create`` and the
        Python API's ``run(network=...)`` both read their arguments so."""
        nets = ["none" if n == "private" else n for n in networks] or [DEFAULT_NETWORK]
        return cls(
            networks=nets,
            ports=[p for spec in publish for p in parse_publish(spec)],
            ip=ip,
            add_hosts=[parse_add_host(h) for h in add_hosts],
            dns=list(dns),
            dns_search=list(dns_search),
            dns_options=list(dns_options),
            publish_all=publish_all,
            expose=[p for spec in expose for p in parse_expose(spec)],
            mac_address=parse_mac(mac_address) if mac_address is not None else None,
        ).validate()

    @property
    def mode(self) -> Literal["host", "none", "slirp4netns", "pasta", "container", "cni"]:
        if len(self.networks) == 1 and self.networks[0].startswith(CONTAINER_PREFIX):
            return "container"
        if self.networks == ["host"]:
            return "host"
        if self.networks == ["none"]:
            return "none"
        if self.networks == [SLIRP4NETNS]:
            return "slirp4netns"
        if self.networks == [PASTA]:
            return "pasta"
        return "cni"

    def validate(self) -> NetworkOptions:
        """Check the combination (InvalidArgument naming the flag); returns self."""
        if not self.networks:
            raise InvalidArgument("no network given (use --network none for loopback only)")
        if len(set(self.networks)) != len(self.networks):
            raise InvalidArgument(f"a network is given twice: {', '.join(self.networks)}")
        pseudo = [n for n in self.networks if n in (*PSEUDO_NETWORKS, SLIRP4NETNS, PASTA)]
        if pseudo and len(self.networks) > 1:
            raise InvalidArgument(f"--network {pseudo[0]} cannot be combined with other networks")
        for n in self.networks:
            if n.startswith(CONTAINER_PREFIX) and (len(self.networks) > 1 or n == CONTAINER_PREFIX):
                raise InvalidArgument(
                    f"--network {n}: give one container (--network container:NAME) and no other network"
                )
            if n.startswith("ns:"):
                raise InvalidArgument(f"--network {n}: joining a namespace by path is not supported")
        if self.mode == "container":
            _conflicts(self)
        if (self.ports or self.publish_all) and self.mode not in ("cni", "slirp4netns", "pasta"):
            flag = "--publish-all" if self.publish_all and not self.ports else "--publish"
            raise InvalidArgument(
                f"{flag} needs a bridge network: with --network {self.networks[0]} there is nothing to "
                "publish through" + (" (the container's ports are the host's)" if self.mode == "host" else "")
            )
        if self.mac_address is not None:
            if self.mode in ("host", "none"):
                raise InvalidArgument(
                    f"conflicting options: mac-address and the network mode (--network {self.networks[0]})"
                )
            if self.mode != "cni":
                raise InvalidArgument(
                    f"--mac-address needs a bridge network, not --network {self.networks[0]}"
                )
            parse_mac(self.mac_address)
        if self.ip is not None:
            if self.mode != "cni":
                raise InvalidArgument(f"--ip needs a bridge network, not --network {self.networks[0]}")
            if len(self.networks) > 1:
                raise InvalidArgument("--ip works with one network only")
            try:
                addr = ipaddress.ip_address(self.ip)
            except ValueError:
                raise InvalidArgument(f"--ip {self.ip!r}: not an IP address") from None
            if addr.version != 4:
                raise InvalidArgument(f"--ip {self.ip}: only IPv4 addresses are supported")
        seen: dict[tuple[str, int, str], PortMapping] = {}
        for p in self.ports:
            if p.host_port:
                key = (p.host_ip, p.host_port, p.protocol)
                if key in seen:
                    raise InvalidArgument(f"host port {p.public}/{p.protocol} is published twice")
                seen[key] = p
        for d in self.dns:
            try:
                ipaddress.ip_address(d)
            except ValueError:
                raise InvalidArgument(f"--dns {d!r}: not an IP address") from None
        for s in (*self.dns_search, *self.dns_options):
            if not s or any(c.isspace() for c in s):
                raise InvalidArgument(f"invalid DNS search domain or option {s!r}")
        if self.mode == "none" and any(ip == HOST_GATEWAY for _, ip in self.add_hosts):
            raise InvalidArgument("--add-host NAME:host-gateway needs a network (not --network none)")
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"networks": list(self.networks)}
        if self.ports:
            out["ports"] = [p.to_json() for p in self.ports]
        if self.ip:
            out["ip"] = self.ip
        if self.add_hosts:
            out["add_hosts"] = [f"{n}:{ip}" for n, ip in self.add_hosts]
        for key in ("dns", "dns_search", "dns_options"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.publish_all:
            out["publish_all"] = True
        if self.expose:
            out["expose"] = [f"{p}/{proto}" for p, proto in self.expose]
        if self.mac_address:
            out["mac_address"] = self.mac_address
        return out

    def with_exposed(self, image_exposed: Any) -> NetworkOptions:
        """With ``-P``: the options with every exposed port (the image config's
        ``ExposedPorts``, ``{"80/tcp": {}}``, then ``expose``) that no ``-p`` publishes added
        to ``ports`` with host port 0, so that each start picks a free host port, as for
        ``-p 80`` (docker's ephemeral ports, on every address). Called at create; a port the
        image names badly is InvalidArgument naming it."""
        from dataclasses import replace

        if not self.publish_all:
            return self
        exposed: list[tuple[int, str]] = []
        if isinstance(image_exposed, dict):
            for key in image_exposed:
                try:
                    exposed.extend(parse_expose(str(key)))
                except InvalidArgument as e:
                    raise InvalidArgument(f"the image's config.ExposedPorts: {e}") from None
        published = {(p.container_port, p.protocol) for p in self.ports}
        added = []
        for port, proto in [*exposed, *self.expose]:
            if (port, proto) not in published:
                published.add((port, proto))
                added.append(PortMapping(port, 0, proto))
        return replace(self, ports=[*self.ports, *added])

    @classmethod
    def from_json(cls, obj: Any) -> NetworkOptions:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"network options must be an object, got {type(obj).__name__}")
        ports = obj.get("ports", [])
        if not isinstance(ports, list):
            raise InvalidArgument("network options: 'ports' must be a list")
        ip = obj.get("ip")
        if ip is not None and not isinstance(ip, str):
            raise InvalidArgument("network options: 'ip' must be a string")
        mac = obj.get("mac_address")
        if mac is not None and not isinstance(mac, str):
            raise InvalidArgument("network options: 'mac_address' must be a string")
        return cls(
            networks=_strings(obj, "networks") or [DEFAULT_NETWORK],
            ports=[PortMapping.from_json(p) for p in ports],
            ip=ip,
            add_hosts=[parse_add_host(h) for h in _strings(obj, "add_hosts")],
            dns=_strings(obj, "dns"),
            dns_search=_strings(obj, "dns_search"),
            dns_options=_strings(obj, "dns_options"),
            publish_all=bool(obj.get("publish_all", False)),
            expose=[p for spec in _strings(obj, "expose") for p in parse_expose(spec)],
            mac_address=parse_mac(mac) if mac is not None else None,
        )
