"""Published ports: ``-p [IP:][HOST:]CONTAINER[/PROTO]`` as docker parses it, the mapping the
CNI ``portmap`` plugin takes (``runtimeConfig.portMappings``), and docker's way of printing one.

A mapping's host port 0 means "any free port": it is chosen when the container starts (and
may differ at the next start), as docker does. Only IPv4 host addresses are taken: the
networks ctrstore makes are IPv4, and portmap ignores a mapping whose address family the
container has no address of.
"""

from __future__ import annotations

__all__ = ["PROTOCOLS", "PortMapping", "format_ports", "parse_publish", "parse_private_port"]

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from ctrstore.errdefs import InvalidArgument

PROTOCOLS = ("tcp", "udp", "sctp")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class PortMapping:
    """One published port: ``host_ip:host_port`` on the host to ``container_port`` in the
    container, for ``protocol``. ``host_ip`` ``""`` is every address of the host (docker's
    ``0.0.0.0``); ``host_port`` 0 is a free port chosen at start."""

    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        """The shape recorded with the container (go-cni's ``PortMapping``, as nerdctl keeps it)."""
        return {
            "HostPort": self.host_port,
            "ContainerPort": self.container_port,
            "Protocol": self.protocol,
            "HostIP": self.host_ip,
        }

    @classmethod
    def from_json(cls, obj: Any) -> PortMapping:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"port mapping must be an object, got {obj!r}")
        try:
            p = cls(
                int(obj["ContainerPort"]),
                int(obj.get("HostPort", 0)),
                str(obj.get("Protocol", "tcp")),
                str(obj.get("HostIP", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"port mapping {obj!r}: {e}") from None
        _check_port(p.container_port, "container port", str(obj), zero=False)
        _check_port(p.host_port, "host port", str(obj), zero=True)
        if p.protocol not in PROTOCOLS:
            raise InvalidArgument(f"port mapping {obj!r}: protocol {p.protocol!r} (use tcp, udp or sctp)")
        return p

    def to_cni(self) -> dict[str, Any]:
        """The entry of the ``portMappings`` capability (CNI's CONVENTIONS.md)."""
        out: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    @property
    def private(self) -> str:
        """``80/tcp``: the container side, as ``docker port`` names it."""
        return f"{self.container_port}/{self.protocol}"

    @property
    def public(self) -> str:
        """``0.0.0.0:8080``: the host side."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}"

    def __str__(self) -> str:
        """docker's form: ``0.0.0.0:8080->80/tcp``."""
        return f"{self.public}->{self.private}"


def format_ports(ports: list[PortMapping]) -> str:
    """The PORTS column of ``ps``: every mapping in docker's form, comma-separated."""
    return ", ".join(str(p) for p in ports)


def _check_port(n: int, what: str, spec: str, *, zero: bool) -> None:
    if not (0 if zero else 1) <= n <= 65535:
        raise InvalidArgument(f"publish {spec!r}: invalid {what} {n} (1-65535)")


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    m = _RANGE.match(text)
    if not m:
        raise InvalidArgument(f"publish {spec!r}: invalid {what} {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    _check_port(lo, what, spec, zero=False)
    _check_port(hi, what, spec, zero=False)
    if hi < lo:
        raise InvalidArgument(f"publish {spec!r}: invalid {what} range {text!r} (end before start)")
    return lo, hi


def _host_ip(text: str, spec: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text in ("", "0.0.0.0"):
        return ""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(f"publish {spec!r}: invalid host IP address {text!r}") from None
    if addr.version != 4:
        raise InvalidArgument(
            f"publish {spec!r}: IPv6 host address {text} is not supported (the networks are IPv4)"
        )
    return str(addr)


def parse_publish(spec: str) -> list[PortMapping]:
    """Parse one ``-p``/``--publish`` value, as docker's ``nat.ParsePortSpec``:

    ``CONTAINER`` (a free host port on every address), ``HOST:CONTAINER``,
    ``IP:HOST:CONTAINER``, ``IP::CONTAINER`` (a free port on IP); each port may be a range
    (``8000-8009:80-89``, both sides as long as each other), and ``/tcp`` (default), ``/udp``
    or ``/sctp`` may follow. Anything else is InvalidArgument naming the value — a host range
    for one container port (``8000-8009:80``, "any free port of the range" to docker) too."""
    body, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"publish {spec!r}: unknown protocol {proto!r} (use tcp, udp or sctp)")
    # An IPv6 address is bracketed and holds colons: split the rest after it.
    ip_text = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1 : end + 2] != ":":
            raise InvalidArgument(f"publish {spec!r}: expected [IPv6]:HOST:CONTAINER")
        ip_text, body = body[: end + 1], body[end + 2 :]
        parts = body.split(":")
        if len(parts) != 2:
            raise InvalidArgument(f"publish {spec!r}: expected [IPv6]:HOST:CONTAINER")
        host, container = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            host, container = "", parts[0]
        elif len(parts) == 2:
            host, container = parts
        elif len(parts) == 3:
            ip_text, host, container = parts
        else:
            raise InvalidArgument(f"publish {spec!r}: expected [IP:][HOST:]CONTAINER[/PROTOCOL]")
    if not container:
        raise InvalidArgument(f"publish {spec!r}: no container port given")
    host_ip = _host_ip(ip_text, spec)
    c_lo, c_hi = _port_range(container, "container port", spec)
    if not host:
        return [PortMapping(p, 0, proto, host_ip) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _port_range(host, "host port", spec)
    if c_lo == c_hi and h_lo == h_hi:
        return [PortMapping(c_lo, h_lo, proto, host_ip)]
    if h_hi - h_lo != c_hi - c_lo:
        raise InvalidArgument(
            f"publish {spec!r}: the host range {host} and the container range {container} differ in length"
        )
    return [PortMapping(c, h_lo + (c - c_lo), proto, host_ip) for c in range(c_lo, c_hi + 1)]


def parse_private_port(text: str) -> tuple[int, str]:
    """``80`` or ``80/udp`` (``docker port``'s argument): the container port and protocol."""
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(f"invalid port {text!r}: expected PORT[/PROTOCOL]")
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid port {text!r}: unknown protocol {proto!r} (use tcp, udp or sctp)")
    return int(port), proto
