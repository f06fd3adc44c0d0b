"""Per-registry host configuration in containerd's ``hosts.toml`` format (``docs/hosts.md``).

For a registry ``host[:port]`` the file is ``<hosts dir>/<dir>/hosts.toml`` where ``<dir>`` is
the first that exists of ``host_port_`` (only with a port), ``host:port`` (or ``host``) and
``_default``. Example::

    server = "https://registry.example.com"      # default: the registry itself

    [host."https://mirror.example.com"]           # tried first, in file order
      capabilities = ["pull", "resolve"]
      ca = "/etc/certs/mirror.pem"                # or a list; relative to this directory
      client = [["client.cert", "client.key"]]    # or "both.pem", or ["a.pem", "b.pem"]
      skip_verify = false
      override_path = false                       # true: the URL path is the API root as is
      dial_timeout = "2s"                         # connecting (default: 2s for a [host], 30s for server)
      read_timeout = "10s"                        # ctrstore's own: each wait for data (10s / 60s)
      [host."https://mirror.example.com".header]
        x-custom = "1"

The ``[host]`` entries are mirrors (other nodes' ``ctrstore serve``, a pull-through cache...):
they are tried first, in file order, each once and with short timeouts, and any failure of one —
not found, an error, a connection that breaks mid-blob — moves on to the next, the registry
(``server``) last; one that failed (not just a 404) is passed over by the rest of the pull.
``read_timeout`` is ctrstore's (containerd ignores it).

Without a file: ``docker.io`` is served by ``https://registry-1.docker.io/v2``; a loopback
registry with a port other than 443 is tried over HTTPS without verification, falling back to
plain HTTP; ``plain_http`` makes the registry's own host plain HTTP.

Every value is type-checked where it is read: a wrong type, a header with CR/LF, a duration
that is not one, a file that is not UTF-8 TOML is InvalidArgument naming the file and the field.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ctrstore.errdefs import InvalidArgument, PermissionDenied
from ctrstore.remotes.transport import check_header, check_url

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_HOSTS_DIRS",
    "RegistryHost",
    "configure_hosts",
    "hosts_file",
    "is_localhost",
]

#: Where hosts.toml directories are looked for, first match wins (``CTRSTORE_HOSTS_DIR``, a
#: colon-separated list, replaces it).
DEFAULT_HOSTS_DIRS = (Path("/etc/ctrstore/certs.d"), Path("/etc/containerd/certs.d"))
ALL_CAPABILITIES = frozenset({"pull", "resolve", "push"})
DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"
#: dial_timeout and read_timeout are at most this many seconds (larger values overflow socket
#: timeouts).
MAX_DIAL_TIMEOUT = 24 * 3600.0
#: The connect timeout of the registry itself (containerd's default dial_timeout).
DEFAULT_DIAL_TIMEOUT = 30.0
#: The defaults for a mirror (a ``[host]`` entry), which a pull falls back from: a peer that
#: does not answer costs seconds, not minutes. A node on the same network connects in
#: milliseconds and, serving with sendfile, never leaves a reader waiting 10 s for data.
MIRROR_DIAL_TIMEOUT = 2.0
MIRROR_READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class RegistryHost:
    """One endpoint that can serve a registry: the registry itself or a mirror. A value, as
    read from hosts.toml: what changes while a registry is spoken to (HTTP fallback, the TLS
    context built once) is ``remotes.endpoint.Endpoint``'s."""

    host: str
    """``host[:port]`` as it appears in URLs."""
    scheme: str = "https"
    path: str = "/v2"
    """The API root; requests go to ``<scheme>://<host><path>/<repo>/...``."""
    capabilities: frozenset[str] = ALL_CAPABILITIES
    ca: list[Path] = field(default_factory=list)
    client: list[tuple[Path, Path | None]] = field(default_factory=list)
    skip_verify: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    registry: str = ""
    """The registry this host serves (the reference's domain)."""
    http_fallback: bool = False
    """Try HTTPS without verification, switch to HTTP if the server does not speak TLS
    (``remotes.fallback.HTTPFallback``)."""
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    """Seconds to connect."""
    read_timeout: float | None = None
    """Seconds any read may wait for the server (None: the transport's, 60 s by default)."""

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def is_mirror(self) -> bool:
        """A host other than the registry itself: requests carry ``?ns=<registry>``."""
        reg = self.registry
        if reg == DOCKER_HUB:
            return self.host not in (DOCKER_HUB_HOST, DOCKER_HUB)
        return bool(reg) and self.host != reg

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings for this host, built anew (CA and client certificates are read
        here: InvalidArgument or PermissionDenied naming the file)."""
        ctx = ssl.create_default_context()
        if self.skip_verify or self.http_fallback:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for ca in self.ca:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError, ValueError) as e:
                raise _cert_error(f"{self.host}: cannot load CA certificate {ca}", e) from None
        for cert, key in self.client:
            try:
                ctx.load_cert_chain(str(cert), str(key) if key else None)
            except (OSError, ssl.SSLError, ValueError) as e:
                raise _cert_error(f"{self.host}: cannot load client certificate {cert}", e) from None
        return ctx


def _cert_error(what: str, e: Exception) -> InvalidArgument | PermissionDenied:
    if isinstance(e, PermissionError):
        return PermissionDenied(f"{what}: {e.strerror or e}")
    if isinstance(e, ssl.SSLError):
        return InvalidArgument(f"{what}: {e.reason or e}")
    if isinstance(e, OSError):
        return InvalidArgument(f"{what}: {e.strerror or e}")
    return InvalidArgument(f"{what}: {e}")


def is_localhost(host: str) -> bool:
    """``localhost`` or a loopback address, with or without a port."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _port(host: str) -> str | None:
    if host.startswith("["):
        _, _, rest = host.partition("]")
        return rest[1:] if rest.startswith(":") else None
    if host.count(":") == 1:
        return host.rsplit(":", 1)[1]
    return None


def hosts_dirs(dirs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None) -> list[Path]:
    if dirs is None:
        env = os.environ.get("CTRSTORE_HOSTS_DIR")
        if env:
            return [Path(p) for p in env.split(":") if p]
        from ctrstore.config import rootless_defaults, user_defaults

        if rootless_defaults():  # an ordinary user's own certs.d first (~/.config/ctrstore)
            return [Path(user_defaults().config_dir) / "certs.d", *DEFAULT_HOSTS_DIRS]
        return list(DEFAULT_HOSTS_DIRS)
    if isinstance(dirs, (str, os.PathLike)):
        return [Path(p) for p in os.fspath(dirs).split(":") if p]
    return [Path(p) for p in dirs]


def hosts_file(registry: str, dirs: Iterable[Path]) -> Path | None:
    """The hosts.toml that configures ``registry``, or None."""
    names = []
    port = _port(registry)
    if port is not None:
        names.append(f"{_hostname(registry)}_{port}_")
    names += [registry, "_default"]
    for d in dirs:
        for n in names:
            p = d / n / "hosts.toml"
            try:
                if p.is_file():
                    return p
            except PermissionError as e:
                raise PermissionDenied(f"{p}: {e.strerror or e}") from None
            except (OSError, ValueError):
                continue
    return None


def _default_host(registry: str, plain_http: bool) -> RegistryHost:
    if registry == DOCKER_HUB:
        return RegistryHost(DOCKER_HUB_HOST, registry=registry)
    if plain_http:
        return RegistryHost(registry, scheme="http", registry=registry)
    port = _port(registry)
    if is_localhost(registry) and port is not None and port != "443":
        return RegistryHost(registry, registry=registry, http_fallback=True)
    return RegistryHost(registry, registry=registry)


def _paths(value: Any, base: Path, what: str, where: Path) -> list[Path]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) and x and "\0" not in x for x in items):
        raise InvalidArgument(f"{where}: {what} must be a path or a list of paths")
    return [base / x for x in items]


def _clients(value: Any, base: Path, where: Path) -> list[tuple[Path, Path | None]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [(base / value, None)]
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}: client must be a path, a list of paths or of [cert, key] pairs")
    out: list[tuple[Path, Path | None]] = []

    def path(x: object) -> bool:
        return isinstance(x, str) and bool(x) and "\0" not in x

    for item in value:
        if isinstance(item, str) and path(item):
            out.append((base / item, None))
        elif isinstance(item, list) and len(item) == 2 and all(path(x) for x in item):
            out.append((base / item[0], base / item[1]))
        else:
            raise InvalidArgument(f"{where}: bad client entry {str(item)[:100]!r}")
    return out


def _host_from_table(
    url: str,
    table: dict[str, Any],
    base: Path,
    where: Path,
    registry: str,
    plain_http: bool,
    mirror: bool = False,
) -> RegistryHost:
    """One host of hosts.toml; ``mirror``: a ``[host]`` entry (short timeouts by default)."""
    if "://" not in url:
        url = ("http://" if plain_http else "https://") + url
    u = check_url(url, f"{where}: host")
    path = u.path.rstrip("/")
    override = table.get("override_path", False)
    if not isinstance(override, bool):
        raise InvalidArgument(f"{where}: override_path of {url} must be true or false")
    if not override:
        path += "/v2"
    caps = table.get("capabilities")
    if caps is None:
        capabilities = ALL_CAPABILITIES
    elif isinstance(caps, list) and all(isinstance(c, str) for c in caps):
        unknown = set(caps) - ALL_CAPABILITIES
        if unknown:
            raise InvalidArgument(f"{where}: unknown capabilities {sorted(unknown)} for {url}")
        capabilities = frozenset(caps)
    else:
        raise InvalidArgument(f"{where}: capabilities must be a list of strings")
    headers: dict[str, str] = {}
    table_headers = table.get("header")
    if table_headers is None:
        table_headers = {}
    if not isinstance(table_headers, dict):
        raise InvalidArgument(f"{where}: header of {url} must be a table of name = value")
    for k, v in table_headers.items():
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            value = ", ".join(v)
        elif isinstance(v, str):
            value = v
        else:
            raise InvalidArgument(f"{where}: header {k!r} of {url} must be a string or a list of strings")
        check_header(k, value, f"{where}: {url}")
        headers[k] = value
    timeout = MIRROR_DIAL_TIMEOUT if mirror else DEFAULT_DIAL_TIMEOUT
    dial = table.get("dial_timeout")
    if dial is not None:
        timeout = _duration(dial, where, "dial_timeout")
    read: float | None = MIRROR_READ_TIMEOUT if mirror else None
    if table.get("read_timeout") is not None:
        read = _duration(table["read_timeout"], where, "read_timeout")
    skip = table.get("skip_verify", False)
    if not isinstance(skip, bool):
        raise InvalidArgument(f"{where}: skip_verify of {url} must be true or false")
    return RegistryHost(
        u.netloc,
        scheme=u.scheme,
        path=path,
        capabilities=capabilities,
        ca=_paths(table.get("ca"), base, "ca", where),
        client=_clients(table.get("client"), base, where),
        skip_verify=skip,
        headers=headers,
        registry=registry,
        dial_timeout=timeout,
        read_timeout=read,
    )


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART_RE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|ms|s|m|h)")


def _duration(v: Any, where: Path, name: str) -> float:
    """A Go duration (``"5s"``, ``"1m30s"``, ``"500ms"``) or a number of seconds, more than 0
    and at most MAX_DIAL_TIMEOUT."""
    secs: float | None = None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        secs = float(v)
    elif isinstance(v, str) and len(v) <= 64:
        pos, total = 0, 0.0
        while pos < len(v):
            m = _DURATION_PART_RE.match(v, pos)
            if not m:
                break
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if v and pos == len(v):
            secs = total
    if secs is None or not math.isfinite(secs) or not 0 < secs <= MAX_DIAL_TIMEOUT:
        raise InvalidArgument(
            f'{where}: invalid {name} {str(v)[:64]!r} (a duration such as "5s" or "1m30s", '
            f"more than 0 and at most {MAX_DIAL_TIMEOUT:.0f}s)"
        )
    return secs


def configure_hosts(
    registry: str,
    *,
    hosts_dir: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    plain_http: bool = False,
) -> list[RegistryHost]:
    """The endpoints to try for ``registry`` (a reference's domain), in order."""
    path = hosts_file(registry, hosts_dirs(hosts_dir))
    if path is None:
        return [_default_host(registry, plain_http)]
    try:
        raw = path.read_bytes()
    except PermissionError as e:
        raise PermissionDenied(f"{path}: {e.strerror or e}") from None
    except OSError as e:
        raise InvalidArgument(f"{path}: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode())
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"{path}: not UTF-8 (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"{path}: {e}") from None
    except RecursionError:
        raise InvalidArgument(f"{path}: arrays or tables nested too deeply") from None
    base = path.parent
    out: list[RegistryHost] = []
    hosts = doc.get("host") or {}
    if not isinstance(hosts, dict):
        raise InvalidArgument(f'{path}: [host."<url>"] must be tables')
    for url, table in hosts.items():
        if not isinstance(table, dict):
            raise InvalidArgument(f"{path}: host {url[:100]!r} must be a table")
        out.append(_host_from_table(url, table, base, path, registry, plain_http, mirror=True))
    server = doc.get("server")
    if server is not None:
        if not isinstance(server, str):
            raise InvalidArgument(f"{path}: server must be a URL")
        top = {k: v for k, v in doc.items() if k not in ("host", "server")}
        out.append(_host_from_table(server, top, base, path, registry, plain_http))
    else:
        default = _default_host(registry, plain_http)
        # Top-level settings without a server apply to the registry's own endpoint.
        top = {k: v for k, v in doc.items() if k != "host"}
        if top:
            url = f"{default.scheme}://{default.host}"
            h = _host_from_table(url, top, base, path, registry, plain_http)
            fallback = default.http_fallback and "skip_verify" not in top and "ca" not in top
            out.append(replace(h, http_fallback=fallback))
        else:
            out.append(default)
    return out
