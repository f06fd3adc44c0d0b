"""The network plugin's instance (``io.ctrstore.network.v1.cni``): the networks (conflists)
and what a container's networking takes at create, start, exit and removal.

- at **create** (:meth:`NetworkManager.prepare`): the options are checked and the networks
  looked up (the default network written if it is missing); the spec gets the namespace
  path ``<bundle>/netns`` (for CNI networks) and bind mounts of ``<bundle>/hosts``,
  ``hostname`` and ``resolv.conf`` on ``/etc``; the files are written.
- at **start** (:meth:`NetworkManager.setup`, before ``runc create``): what an earlier task
  left is torn down, free host ports are chosen, the namespace made and ADDed to each network
  (:mod:`ctrstore.network.attach`), and the files written again with the addresses.
- at **exit** and **removal** (:meth:`NetworkManager.teardown`): DEL from the record.
- **after a reboot** (the state dir emptied: :meth:`NetworkManager.after_boot`, at plugin
  init) and in ``gc``/``check --repair`` (:meth:`NetworkManager.stale_records`): records whose
  namespace is gone are torn down.

Paths come from the task's bundle (``ctrstore.runtime.bundle``): anything with ``netns``,
``hosts``, ``hostname``, ``resolv_conf`` and ``network_record`` attributes.
"""

from __future__ import annotations

import builtins

__all__ = ["DEFAULT_BIN_DIRS", "DEFAULT_CONF_DIR", "DEFAULT_IPAM_DIR", "NetPaths", "NetworkManager"]

import contextlib
import ipaddress
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, from_oserror

if TYPE_CHECKING:
    import socket

    from ctrstore.network.attach import Record
    from ctrstore.network.cni import CNIPlugins
    from ctrstore.network.conflist import Network, NetworkStore
    from ctrstore.network.options import NetworkOptions
    from ctrstore.network.ports import PortMapping

# (Every command initialises the plugin: what only some of them need is imported where it is
# used.)
DEFAULT_NETWORK = "bridge"

DEFAULT_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
"""Where CNI plugins are looked for: Debian's containernetworking-plugins, then upstream's."""
DEFAULT_CONF_DIR = "/etc/ctrstore/cni/net.d"
DEFAULT_IPAM_DIR = "/run/ctrstore/cni/networks"
DEFAULT_BRIDGE = "ctrstore0"
DEFAULT_SUBNET = "10.4.0.0/24"
RECORD_NAME = "network.json"
BOOTED = "booted"
"""A file in the plugin's state dir: its absence means the state dir was emptied (a reboot)."""


class NetPaths(Protocol):
    """Where a container's networking files are (its bundle's)."""

    @property
    def netns(self) -> Path: ...
    @property
    def hosts(self) -> Path: ...
    @property
    def hostname(self) -> Path: ...
    @property
    def resolv_conf(self) -> Path: ...
    @property
    def network_record(self) -> Path: ...


@dataclass(frozen=True)
class RecordRef:
    """A record found under the runtime's root: whose it is, and where."""

    namespace: str
    container: str
    path: Path


def cni_container_id(namespace: str, cid: str) -> str:
    """The id the plugins know the container by (nerdctl's ``<namespace>-<id>``): it names the
    iptables chains and the host-local allocation."""
    return f"{namespace}-{cid}"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        tmp.rename(path)
    except OSError as e:
        raise from_oserror(e, f"writing {path}") from None


class NetworkManager:
    """The networks of one conflist directory, and the containers' attachments of a store
    (their records live in the runtime's root, ``records_root``/<namespace>/<id>)."""

    def __init__(
        self,
        *,
        bin_dirs: Sequence[str] = DEFAULT_BIN_DIRS,
        conf_dir: str = DEFAULT_CONF_DIR,
        ipam_dir: str = DEFAULT_IPAM_DIR,
        bridge: str = DEFAULT_BRIDGE,
        subnet: str = DEFAULT_SUBNET,
        records_root: Path,
        state: Path,
    ) -> None:
        self.bin_dirs = list(bin_dirs)
        self.conf_dir = Path(conf_dir)
        self.ipam_dir = ipam_dir
        self.default_bridge = bridge
        try:
            self.default_subnet = ipaddress.IPv4Network(subnet)
        except ValueError as e:
            raise InvalidArgument(f"network plugin: subnet {subnet!r}: {e}") from None
        self.records_root = records_root
        self.state = state

    @cached_property
    def plugins(self) -> CNIPlugins:
        from ctrstore.network.cni import CNIPlugins

        return CNIPlugins(self.bin_dirs)

    @cached_property
    def store(self) -> NetworkStore:
        from ctrstore.network.conflist import NetworkStore

        return NetworkStore(self.conf_dir, self.ipam_dir)

    # -- networks -----------------------------------------------------------------------------
    def list(self) -> builtins.list[Network]:
        nets = {n.name: n for n in self.store.list()}
        if DEFAULT_NETWORK not in nets:
            nets[DEFAULT_NETWORK] = self.ensure_default()
        return sorted(nets.values(), key=lambda n: n.name)

    def get(self, ref: str) -> Network:
        try:
            return self.store.get(ref)
        except NotFound:
            if ref == DEFAULT_NETWORK:
                return self.ensure_default()
            raise

    def ensure_default(self) -> Network:
        """The default network ``bridge``: written with the plugin's ``bridge`` and ``subnet``
        the first time it is needed (as nerdctl writes ``nerdctl-bridge.conflist``)."""
        with contextlib.suppress(NotFound):
            return self.store.get(DEFAULT_NETWORK)
        conflist = self.store.bridge_conflist(
            DEFAULT_NETWORK, bridge=self.default_bridge, subnet=self.default_subnet
        )
        try:
            return self.store.write(conflist)
        except AlreadyExists:
            return self.store.get(DEFAULT_NETWORK)  # another process wrote it meanwhile

    def create(
        self,
        name: str,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        bridge: str | None = None,
        internal: bool = False,
        mtu: int = 0,
        labels: Mapping[str, str] | None = None,
    ) -> Network:
        """A new bridge network (``network create``). Without ``subnet``, the first free /24
        from 10.4.1.0/24; a given one must not overlap another network's or a host route."""
        from ctrstore.network.conflist import network_id, validate_network_name

        validate_network_name(name)
        if name == DEFAULT_NETWORK:
            with contextlib.suppress(NotFound):
                self.store.get(name)
                raise AlreadyExists(f"network {name!r} already exists")
        if subnet is None:
            if gateway or ip_range:
                raise InvalidArgument("--gateway and --ip-range need --subnet")
            net = self.store.free_subnet()
        else:
            try:
                net = ipaddress.IPv4Network(subnet)
            except ValueError as e:
                raise InvalidArgument(
                    f"--subnet {subnet!r}: {e} (an IPv4 network such as 10.5.0.0/24)"
                ) from None
            for used in self.store.used_subnets():
                if used.version == 4 and net.overlaps(used):
                    raise FailedPrecondition(
                        f"subnet {net} overlaps {used}, used by another network or a route"
                    )
        try:
            gw = ipaddress.IPv4Address(gateway) if gateway else None
            rng = ipaddress.IPv4Network(ip_range) if ip_range else None
        except ValueError as e:
            raise InvalidArgument(f"--gateway/--ip-range: {e}") from None
        conflist = self.store.bridge_conflist(
            name,
            bridge=bridge or f"br-{network_id(name)[:12]}",
            subnet=net,
            gateway=gw,
            ip_range=rng,
            internal=internal,
            mtu=mtu,
            labels=labels,
        )
        return self.store.write(conflist)

    def remove(self, net: Network) -> None:
        """Remove a network ctrstore made: its file, then its bridge with the firewall's
        isolation rules for it, and host-local's directory for it (when no address is
        allocated in it). The caller checks that no container uses it."""
        import subprocess

        from ctrstore.network import iptables

        self.store.remove_file(net)
        if net.bridge:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["ip", "link", "delete", net.bridge, "type", "bridge"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
            iptables.remove_bridge_isolation(net.bridge)
        data = net.ipam_data_dir
        if data is not None and data.is_dir():
            names = {p.name for p in data.iterdir()}
            if names <= {"lock"} | {n for n in names if n.startswith("last_reserved_ip")}:
                for n in names:
                    with contextlib.suppress(OSError):
                        (data / n).unlink()
                with contextlib.suppress(OSError):
                    data.rmdir()

    # -- a container: create ------------------------------------------------------------------
    def prepare(self, opts: NetworkOptions, spec: dict[str, Any], paths: NetPaths) -> None:
        """At create: check ``opts``, look the networks up (NotFound for an unknown one), and
        make ``spec`` use them (namespace path, ``/etc`` files); write the files."""
        opts.validate()
        if opts.mode == "cni":
            nets = [self.get(n) for n in opts.networks]
            for n in nets:
                if n.pseudo:
                    raise InvalidArgument(f"--network {n.name} cannot be combined with other networks")
            if opts.ip and nets[0].subnets:
                ip = ipaddress.ip_address(opts.ip)
                if not any(
                    ip in s and ip not in (s.network_address, s.broadcast_address) for s in nets[0].subnets
                ):
                    subnets = ", ".join(str(s) for s in nets[0].subnets)
                    raise InvalidArgument(
                        f"--ip {ip} is not a host address of network {nets[0].name} ({subnets})"
                    )
            if opts.mac_address and not nets[0].has_plugin("tuning"):
                raise InvalidArgument(
                    f"--mac-address: network {nets[0].name} has no tuning plugin, which sets the address"
                )
            if opts.ports and not any(n.has_plugin("portmap") for n in nets):
                raise InvalidArgument(
                    f"--publish: network {nets[0].name} has no portmap plugin (an --internal network?)"
                )
        if opts.mode in ("cni", "slirp4netns", "pasta"):  # (slirp4netns, pasta: ctrstore.rootless)
            linux = spec.setdefault("linux", {})
            namespaces = linux.setdefault("namespaces", [])
            for ns in namespaces:
                if ns.get("type") == "network":
                    ns["path"] = str(paths.netns)
                    break
            else:
                namespaces.append({"type": "network", "path": str(paths.netns)})
        taken = {m.get("destination") for m in spec.get("mounts", [])}
        for dest, src in (
            ("/etc/hosts", paths.hosts),
            ("/etc/hostname", paths.hostname),
            ("/etc/resolv.conf", paths.resolv_conf),
        ):
            if dest not in taken:  # a user's -v over it wins
                spec.setdefault("mounts", []).append(
                    {
                        "destination": dest,
                        "type": "bind",
                        "source": str(src),
                        "options": ["rbind", "rprivate"],
                    }
                )
        self.write_files(opts, paths, str(spec.get("hostname", "")), None)

    def write_files(self, opts: NetworkOptions, paths: NetPaths, hostname: str, record: Record | None) -> str:
        """``hosts``, ``hostname`` and ``resolv.conf`` for the container (with its addresses
        once it is attached); returns the ``hosts`` text (the hosts store's *base*)."""
        from ctrstore.network import etc
        from ctrstore.network.attach import addresses
        from ctrstore.network.options import HOST_GATEWAY

        host = opts.mode == "host"
        ips: builtins.list[str] = []
        gateway = ""
        if record is not None:
            for att in record.networks():
                for a in addresses(att.result):
                    ips.append(a["ip"])
                    gateway = gateway or a["gateway"]
        extra = []
        for name, ip in opts.add_hosts:
            if ip == HOST_GATEWAY:
                ip = "127.0.0.1" if host else gateway
                if not ip:
                    continue  # (not attached yet: written again at start)
            extra.append((name, ip))
        hosts = etc.hosts_file(hostname, ips, extra, host_network=host)
        _write(paths.hosts, hosts)
        _write(paths.hostname, etc.hostname_file(hostname))
        _write(
            paths.resolv_conf,
            etc.resolv_conf(
                etc.host_resolv_conf(),
                dns=opts.dns,
                search=opts.dns_search,
                options=opts.dns_options,
                host_network=host,
            ),
        )
        return hosts

    # -- a container: start and stop ------------------------------------------------------------
    def setup(
        self,
        namespace: str,
        cid: str,
        opts: NetworkOptions,
        paths: NetPaths,
        hostname: str,
        name: str = "",
    ) -> Record | None:
        """Before the task is created: tear down what an earlier task left, then attach the
        container to its networks (CNI), write its ``/etc`` files and make it a member of
        the hosts store as ``name`` (its ``/etc/hosts`` gets the other containers of its
        networks, theirs get it). Returns the record (None without CNI networks). On a
        failure nothing is left set up."""
        from ctrstore.network import hosts_store
        from ctrstore.network.attach import Attachment, addresses, attach, detach

        self.teardown(paths)
        if opts.mode != "cni":
            self.write_files(opts, paths, hostname, None)
            return None
        nets = [self.get(n) for n in opts.networks]
        ports = self._host_ports(opts.ports, skip=paths.network_record)
        attachments = []
        published = False
        for i, net in enumerate(nets):
            args: builtins.list[tuple[str, str]] = [("IgnoreUnknown", "1")]
            caps: dict[str, Any] = {}
            if i == 0 and opts.ip:
                args.append(("IP", opts.ip))
            if i == 0 and opts.mac_address:  # (tuning sets it: CNI_ARGS, or its mac capability)
                args.append(("MAC", opts.mac_address))
                caps["mac"] = opts.mac_address
            if ports and not published and net.has_plugin("portmap"):
                caps["portMappings"] = [p.to_cni() for p in ports]
                published = True
            attachments.append(Attachment(net.name, f"eth{i}", dict(net.conflist), args, caps))
        record = attach(
            paths.network_record,
            paths.netns,
            cni_container_id(namespace, cid),
            self.plugins,
            attachments,
            ports,
            hosts_store={"root": str(self.hosts_root), "namespace": namespace},
        )
        try:
            base = self.write_files(opts, paths, hostname, record)
            member = hosts_store.Member(
                record.container_id,
                name or cid,
                hostname,
                [],
                str(paths.hosts),
                base,
                str(paths.network_record),
            )
            joined = {att.network: [a["ip"] for a in addresses(att.result)] for att in record.networks()}
            hosts_store.join(self.hosts_root, namespace, member, joined)
        except BaseException:
            with contextlib.suppress(Exception):
                detach(paths.network_record)
            raise
        return record

    def teardown(self, paths: NetPaths) -> Record | None:
        """DEL what the container's record says was set up (see ``attach.detach``). A record
        that cannot be read (damaged by hand) is removed with the namespace at ``paths.netns``:
        what else it set up cannot be known, and the container must stay removable."""
        from ctrstore.network import netns
        from ctrstore.network.attach import DamagedRecord, detach

        try:
            return detach(paths.network_record)
        except DamagedRecord:
            netns.remove(paths.netns)
            with contextlib.suppress(FileNotFoundError):
                paths.network_record.unlink()
            with contextlib.suppress(Exception):
                self.prune_hosts()  # (its member of the hosts store, if it was one)
            return None

    @property
    def hosts_root(self) -> Path:
        """The hosts store (``ctrstore.network.hosts_store``), in the plugin's state dir."""
        from ctrstore.network.hosts_store import ROOT_NAME

        return self.state / ROOT_NAME

    def prune_hosts(self, *, dry_run: bool = False) -> builtins.list[str]:
        """Remove the hosts store's members that are no longer attached (``gc``, ``check
        --repair``); ``<namespace>/<cni id>`` of each (``dry_run``: only say which)."""
        from ctrstore.network import hosts_store

        return hosts_store.prune(self.hosts_root, dry_run=dry_run)

    def record(self, paths: NetPaths) -> Record | None:
        """The container's record while it is attached (None otherwise)."""
        from ctrstore.network.attach import Record

        return Record.load(paths.network_record)

    # -- ports ----------------------------------------------------------------------------------
    def _host_ports(self, ports: Sequence[PortMapping], *, skip: Path) -> builtins.list[PortMapping]:
        """The mappings with a free host port chosen where none is given; AlreadyExists if a
        given one is published by another container of this store, or a program of the host
        listens on it (docker's "port is already allocated")."""
        from dataclasses import replace

        from ctrstore.network.attach import Record
        from ctrstore.network.netns import is_netns

        if not ports:
            return []
        taken: dict[tuple[int, str], tuple[str, str]] = {}
        for ref in self.records():
            if ref.path == skip:
                continue
            with contextlib.suppress(Exception):
                rec = Record.load(ref.path)
                if rec is None or not is_netns(Path(rec.netns)):
                    continue
                for p in rec.ports:
                    taken[(p.host_port, p.protocol)] = (p.host_ip, ref.container)
        out = []
        for p in ports:
            if p.host_port:
                other = taken.get((p.host_port, p.protocol))
                if other is not None and (not other[0] or not p.host_ip or other[0] == p.host_ip):
                    raise AlreadyExists(
                        f"port {p.public}/{p.protocol} is already allocated "
                        f"(published by container {other[1]})"
                    )
                _check_free(p)
                out.append(p)
            else:
                out.append(replace(p, host_port=_free_port(p)))
            taken[(out[-1].host_port, p.protocol)] = (p.host_ip, "")
        return out

    # -- records: inspection and cleanup ----------------------------------------------------
    def records(self) -> Iterator[RecordRef]:
        """Every container's record in this store (``<records_root>/<ns>/<id>/network.json``)."""
        try:
            nsdirs = sorted(p for p in self.records_root.iterdir() if p.is_dir())
        except OSError:
            return
        for nsdir in nsdirs:
            try:
                found = sorted(nsdir.glob(f"*/{RECORD_NAME}"))
            except OSError:
                continue
            for path in found:
                yield RecordRef(nsdir.name, path.parent.name, path)

    def after_boot(self) -> builtins.list[RecordRef]:
        """Once after the state dir was emptied (a reboot: the ``booted`` marker is gone):
        tear down every record whose namespace is gone; returns those torn down. Failures are
        left for ``rm``, ``gc`` and ``check --repair``."""
        marker = self.state / BOOTED
        if marker.exists():
            return []
        from ctrstore.network import hosts_store
        from ctrstore.network.attach import Record, detach
        from ctrstore.network.netns import is_netns

        done = []
        for ref in self.records():
            with contextlib.suppress(Exception):
                rec = Record.load(ref.path)
                if rec is not None and not is_netns(Path(rec.netns)):
                    detach(ref.path)  # (which takes it out of the hosts store too)
                    done.append(ref)
        with contextlib.suppress(Exception):
            hosts_store.prune(self.hosts_root)
        with contextlib.suppress(OSError):
            self.state.mkdir(parents=True, exist_ok=True)
            marker.touch()
        return done

    def settings(self, opts: NetworkOptions | None, paths: NetPaths) -> dict[str, Any]:
        """docker's ``NetworkSettings`` of a container: its addresses and ports while it is
        attached; the requested ports otherwise."""
        from ctrstore.network.attach import addresses

        rec = None
        with contextlib.suppress(Exception):
            rec = self.record(paths)
        ports: dict[str, list[dict[str, str]] | None] = {}
        for p in rec.ports if rec is not None else (opts.ports if opts else []):
            ports.setdefault(p.private, [])
            entries = ports[p.private]
            assert entries is not None
            if rec is not None or p.host_port:
                entries.append({"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port or "")})
        networks: dict[str, Any] = {}
        asked_mac = (opts.mac_address or "") if opts else ""  # (--mac-address: eth0's)
        for i, name in enumerate(opts.networks if opts else []):
            mac = asked_mac if i == 0 else ""
            networks[name] = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": mac}
        first_ip = ""
        first: dict[str, Any] = {}
        if rec is not None:
            for att in rec.networks():
                addrs = addresses(att.result)
                a = addrs[0] if addrs else None
                entry = {
                    "IPAddress": a["ip"] if a else "",
                    "IPPrefixLen": int(a["prefixlen"]) if a and a["prefixlen"].isdigit() else 0,
                    "Gateway": a["gateway"] if a else "",
                    "MacAddress": a["mac"] if a else "",
                    "InterfaceName": att.ifname,
                }
                networks[att.network] = entry
                if not first_ip and a:
                    first_ip, first = a["ip"], entry
        return {
            "IPAddress": first_ip,
            "IPPrefixLen": first.get("IPPrefixLen", 0),
            "Gateway": first.get("Gateway", ""),
            "MacAddress": first.get("MacAddress", "") or asked_mac,
            "Ports": ports,
            "Networks": networks,
            "SandboxKey": rec.netns if rec is not None else "",
        }


def _sock(p: PortMapping) -> socket.socket:
    import socket

    kind = socket.SOCK_DGRAM if p.protocol == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
    return s


def _check_free(p: PortMapping) -> None:
    import errno

    if p.protocol == "sctp":
        return
    with _sock(p) as s:
        try:
            s.bind((p.host_ip or "0.0.0.0", p.host_port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AlreadyExists(
                    f"port {p.public}/{p.protocol} is already allocated (a program of the host uses it)"
                ) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"publish {p}: {p.host_ip} is not an address of this host") from None
            raise from_oserror(e, f"publishing {p}") from None


def _free_port(p: PortMapping) -> int:
    """A port the kernel says is free now (from its ephemeral range, as docker's allocator)."""
    from ctrstore.network.ports import PortMapping

    proto = PortMapping(p.container_port, 0, "tcp" if p.protocol == "sctp" else p.protocol, p.host_ip)
    with _sock(proto) as s:
        try:
            s.bind((p.host_ip or "0.0.0.0", 0))
        except OSError as e:
            raise from_oserror(e, f"choosing a host port for {p.private}") from None
        return int(s.getsockname()[1])
