"""The three files every container gets bind-mounted over its own: ``/etc/hosts``,
``/etc/hostname`` and ``/etc/resolv.conf``, as docker writes them.

- ``hosts``: the localhost lines, ``--add-host`` entries, then the container's address(es)
  with its host name (with ``--network host``: the host's own ``/etc/hosts`` and the
  ``--add-host`` entries).
- ``hostname``: the container's host name.
- ``resolv.conf``: the host's, without the loopback name servers a container cannot reach
  (``127.0.0.53`` of systemd-resolved: then the file systemd-resolved writes for programs
  that bypass it, ``/run/systemd/resolve/resolv.conf``); if no server is left, docker's
  defaults (``8.8.8.8``, ``8.8.4.4``). ``--dns``, ``--dns-search`` and ``--dns-option``
  replace the servers, the search list and the options. With ``--network host``, loopback
  servers are kept (they are the host's).

Where the image has none of these files, runc makes an empty one in the container's
snapshot to mount over (as under nerdctl), so ``commit`` keeps three empty files there;
docker keeps them out of its commits with an "init" layer under the container's.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DNS", "hostname_file", "hosts_file", "resolv_conf"]

import ipaddress
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")
"""docker's fallback name servers, when the host's are all loopback addresses."""

_LOCALHOST = """127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
ff00::0	ip6-mcastprefix
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
"""

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


def hosts_file(
    hostname: str,
    addresses: Sequence[str],
    extra_hosts: Sequence[tuple[str, str]] = (),
    *,
    host_network: bool = False,
    host_hosts: Path = HOST_HOSTS,
) -> str:
    """``/etc/hosts`` of a container named ``hostname`` with ``addresses`` (its IPs, without
    prefix length); ``extra_hosts`` are ``(name, ip)`` pairs from ``--add-host``."""
    if host_network:
        try:
            text = host_hosts.read_text(errors="replace")
        except OSError:
            text = _LOCALHOST
        if text and not text.endswith("\n"):
            text += "\n"
    else:
        text = _LOCALHOST
    for name, ip in extra_hosts:
        text += f"{ip}\t{name}\n"
    if not host_network:
        short = hostname.split(".", 1)[0]
        names = hostname if short == hostname else f"{hostname} {short}"
        for ip in addresses:
            text += f"{ip}\t{names}\n"
    return text


def hostname_file(hostname: str) -> str:
    return hostname + "\n"


def _parse(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """Name servers, search domains, options and the other lines of a resolv.conf."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    other: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            servers.append(values[0])
        elif key in ("search", "domain"):
            search = values  # the last one counts (resolv.conf(5))
        elif key == "options":
            options.extend(values)
        else:
            other.append(line)
    return servers, search, options, other


def _loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_resolv_conf(path: Path = HOST_RESOLV_CONF, resolved: Path = RESOLVED_RESOLV_CONF) -> str:
    """The host's resolv.conf as containers should start from it: systemd-resolved's upstream
    list when the host's only server is its local stub."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    servers = _parse(text)[0]
    if servers and all(_loopback(s) for s in servers):
        try:
            return resolved.read_text(errors="replace")
        except OSError:
            pass
    return text


def resolv_conf(
    host_text: str,
    *,
    dns: Sequence[str] = (),
    search: Sequence[str] = (),
    options: Sequence[str] = (),
    host_network: bool = False,
) -> str:
    """A container's resolv.conf from the host's (``host_text``) and ``--dns``,
    ``--dns-search`` and ``--dns-option``."""
    servers, host_search, host_options, _ = _parse(host_text)
    if dns:
        servers = list(dns)
    elif not host_network:
        servers = [s for s in servers if not _loopback(s)] or list(DEFAULT_DNS)
    lines = []
    chosen_search = [s for s in search if s != "."] if search else host_search
    if chosen_search:
        lines.append("search " + " ".join(chosen_search))
    lines.extend(f"nameserver {s}" for s in servers)
    chosen_options = list(options) if options else host_options
    if chosen_options:
        lines.append("options " + " ".join(chosen_options))
    return "\n".join(lines) + "\n"
