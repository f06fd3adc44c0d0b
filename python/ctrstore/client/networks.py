"""A store's networks seen with its containers: ``ctrstore network ls|create|rm|inspect|prune``,
the cleanup of networking that stopped tasks left behind, and the network side of
``ContainerManager`` (``client/containers.py``): the options of a new container, attaching at
each start (:class:`Attacher`, the ``before_create`` of the task's start), detaching before its
bundle is removed (:class:`Detacher`), and its settings and published ports.

The networks themselves (conflists) and the attaching are the network plugin's
(``ctrstore.network.manager``); what needs the containers of every namespace too — whether a
network is in use, which containers are on it, which network records are stale — is here.

A record (``network.json`` in a container's work dir) is *stale* when its container is gone,
when its namespace is gone (a reboot), or when the container's task no longer runs (a killed
shim, a crashed ``run``) and the record is older than a minute (a start in progress writes it
just before its task is created). ``gc`` and ``check --repair`` tear stale records down.
"""

from __future__ import annotations

import builtins

__all__ = [
    "RECORD_GRACE_SECONDS",
    "Attacher",
    "Detacher",
    "Networks",
    "network_options",
    "plugin",
    "joined",
    "ports",
    "prepare",
    "settings",
    "spec_options",
]

import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.errdefs import CtrstoreError, FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable

    from ctrstore.client.client import Client
    from ctrstore.client.containers import ContainerManager
    from ctrstore.metadata.containers import Container
    from ctrstore.network import NetworkOptions, PortMapping
    from ctrstore.network.conflist import Network
    from ctrstore.network.join import Joined
    from ctrstore.network.manager import NetworkManager, RecordRef
    from ctrstore.oci.spec import SpecOptions
    from ctrstore.runtime.bundle import Bundle
    from ctrstore.runtime.manager import TaskManager


RECORD_GRACE_SECONDS = 60.0


# -- one container ---------------------------------------------------------------------------
def plugin(getter: Callable[[], NetworkManager] | None) -> NetworkManager:
    """The network plugin's instance; FailedPrecondition if this client has none."""
    if getter is None:
        raise FailedPrecondition("no network plugin: containers cannot be given networking here")
    return getter()


def network_options(c: Container) -> NetworkOptions | None:
    """The networking container ``c`` was created with (its ``ctrstore.io/network``
    extension); None for a record made without (then its spec alone decides)."""
    from ctrstore.labels import NETWORK_EXTENSION
    from ctrstore.network import NetworkOptions

    doc = c.extensions.get(NETWORK_EXTENSION)
    return None if doc is None else NetworkOptions.from_json(doc)


def joined(mgr: ContainerManager, ref: str) -> Joined:
    """The container ``--network container:REF`` names, as ``ctrstore.network.join`` needs it
    (NotFound naming ``ref`` if there is none)."""
    from ctrstore.errdefs import NotFound
    from ctrstore.network.join import Joined

    try:
        oid = mgr.resolve(ref)
    except NotFound:
        raise NotFound(f"--network container:{ref}: no such container: {ref}") from None
    other = mgr.store.get(oid)
    opts = network_options(other)
    st = mgr.status(oid)
    return Joined(
        oid,
        mgr.name_of(other),
        str(other.spec.get("hostname", "")),
        mgr.tasks.bundle(oid),
        opts.mode if opts is not None else "",
        st.pid if st.status in ("running", "paused") else 0,
    )


def _joined_by(join: Callable[[str], Joined] | None, network: NetworkOptions) -> Joined:
    """The container a ``--network container:REF`` one joins, found with ``join``."""
    from ctrstore.network.options import CONTAINER_PREFIX

    if join is None:
        raise FailedPrecondition("--network container: needs a client that knows the containers")
    return join(network.networks[0].removeprefix(CONTAINER_PREFIX))


def spec_options(
    network: NetworkOptions | None, opts: SpecOptions, join: Callable[[str], Joined] | None = None
) -> tuple[NetworkOptions | None, SpecOptions]:
    """The networking of a new container and the spec options that go with it: ``host``
    shares the host's namespace, everything else gets a new one (for CNI networks, the one
    ctrstore makes at start). ``--network container:REF`` is resolved with ``join``: recorded
    with the other's full id, the spec gets its host name (``--hostname`` with it is docker's
    conflict), and the other must be running."""
    from dataclasses import replace

    if network is None:
        return None, opts
    network.validate()
    if network.mode == "container":
        from ctrstore.network.join import joined_netns
        from ctrstore.network.options import CONTAINER_PREFIX

        if opts.hostname:
            raise InvalidArgument("conflicting options: hostname and the network mode")
        other = _joined_by(join, network)
        host = joined_netns(other) is None  # (FailedPrecondition if it is not running)
        network = replace(network, networks=[f"{CONTAINER_PREFIX}{other.id}"])
        return network, replace(opts, hostname=other.hostname or None, net="host" if host else "private")
    from ctrstore.rootless.spec import adapt_network

    rootless = adapt_network(network.networks, len(network.ports))  # rootless: no CNI bridge
    if rootless is not None:
        # The options checked against the network the container really gets (--mac-address,
        # --ip: a bridge's, not slirp4netns's or pasta's).
        network = replace(network, networks=rootless).validate()
    mode = network.mode
    return network, replace(opts, net="host" if mode == "host" else ("none" if mode == "none" else "private"))


def prepare(
    getter: Callable[[], NetworkManager] | None,
    opts: NetworkOptions,
    spec: dict[str, Any],
    bundle: Bundle,
    join: Callable[[str], Joined] | None = None,
) -> None:
    """At create: make ``spec`` use the container's networking (``NetworkManager.prepare``);
    ``--network container:ID``: the other's namespace and ``/etc`` files
    (``ctrstore.network.join``), nothing of the network plugin."""
    if opts.mode != "container":
        plugin(getter).prepare(opts, spec, bundle)
        return
    from ctrstore.network.join import joined_netns, set_netns, share_files

    other = _joined_by(join, opts)
    set_netns(spec, joined_netns(other))
    share_files(spec, other.paths)


class Attacher:
    """The ``before_create`` of a container's start: attach it (with its bundle's paths), and
    remember that it did, so that a start that fails afterwards can :meth:`undo` it.
    ``join`` finds the container a ``--network container:`` one joins."""

    def __init__(
        self,
        getter: Callable[[], NetworkManager] | None,
        namespace: str,
        c: Container,
        join: Callable[[str], Joined] | None = None,
    ) -> None:
        self.getter = getter
        self.namespace = namespace
        self.c = c
        self.join = join
        self.bundle: Bundle | None = None

    def __call__(self, bundle: Bundle) -> None:
        opts = network_options(self.c)
        if opts is None:  # no networking of its own: only leftovers to tear down
            Detacher(self.getter)(bundle)
            return
        if opts.mode == "container":  # the other's namespace: nothing to set up, only to check
            from ctrstore.network.join import joined_netns, point_spec_at

            Detacher(self.getter)(bundle)  # (a record would be a leftover of another life)
            other = _joined_by(self.join, opts)
            point_spec_at(bundle.config_json, joined_netns(other))
            return
        self.bundle = bundle
        hostname = str(self.c.spec.get("hostname", ""))
        if opts.mode == "slirp4netns":  # rootless: its namespace served by slirp4netns
            from ctrstore.rootless import slirp

            slirp.setup(plugin(self.getter), self.namespace, self.c.id, opts, bundle, hostname)
            return
        if opts.mode == "pasta":  # rootless: its namespace served by pasta
            from ctrstore.rootless import pasta

            pasta.setup(plugin(self.getter), self.namespace, self.c.id, opts, bundle, hostname)
            return
        from ctrstore.labels import CONTAINER_NAME

        name = self.c.labels.get(CONTAINER_NAME, self.c.id)
        plugin(self.getter).setup(self.namespace, self.c.id, opts, bundle, hostname, name)

    def undo(self) -> None:
        if self.bundle is not None:
            Detacher(self.getter)(self.bundle)
            self.bundle = None


class Detacher:
    """The ``before_remove`` of a container's delete (and :meth:`Attacher.undo`): tear down
    what its record says was set up."""

    def __init__(self, getter: Callable[[], NetworkManager] | None) -> None:
        self.getter = getter

    def __call__(self, bundle: Bundle) -> None:
        if bundle.network_record.exists():
            plugin(self.getter).teardown(bundle)


def settings(getter: Callable[[], NetworkManager] | None, c: Container, bundle: Bundle) -> dict[str, Any]:
    """docker's ``NetworkSettings`` of container ``c``."""
    opts = network_options(c)
    if (opts is None or opts.mode == "container") and not bundle.network_record.exists():
        return {"IPAddress": "", "Ports": {}, "Networks": {}}
    return plugin(getter).settings(opts, bundle)


def ports(c: Container, bundle: Bundle) -> builtins.list[PortMapping]:
    """Container ``c``'s published ports: as set up while it is attached, else as asked for."""
    from ctrstore.network.attach import Record

    try:
        rec = Record.load(bundle.network_record)
    except CtrstoreError:
        rec = None
    if rec is not None:
        return list(rec.ports)
    opts = network_options(c)
    return list(opts.ports) if opts is not None else []


class Networks:
    """The networks of ``client``'s store."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def manager(self) -> NetworkManager:
        return self.client.network_plugin()

    def _tasks(self) -> TaskManager:
        from ctrstore.plugin import RUNTIME
        from ctrstore.runtime.manager import TaskManager

        return self.client.plugins.get_single(RUNTIME, TaskManager)

    # -- the networks --------------------------------------------------------------------------
    def list(self) -> builtins.list[Network]:
        return self.manager.list()

    def get(self, ref: str) -> Network:
        return self.manager.get(ref)

    def create(self, name: str, **kwargs: Any) -> Network:
        """A new bridge network (see ``NetworkManager.create`` for the arguments)."""
        return self.manager.create(name, **kwargs)

    def users(self, name: str) -> builtins.list[tuple[str, str, str]]:
        """``(namespace, id, name)`` of every container (of every namespace) on network ``name``."""
        from ctrstore.labels import CONTAINER_NAME

        out = []
        for ns in self.client.namespaces.list():
            for c in self.client.metadata.containers(ns.name).list():
                try:
                    opts = network_options(c)
                except CtrstoreError:
                    continue
                if opts is not None and name in opts.networks:
                    out.append((ns.name, c.id, c.labels.get(CONTAINER_NAME, c.id)))
        return out

    def remove(self, ref: str) -> Network:
        """Remove a network ctrstore made: refused while a container (of any namespace, running
        or not) is on it, and for ``host`` and ``none``."""
        net = self.get(ref)
        if net.pseudo:
            raise InvalidArgument(f"{net.name!r} is a pre-defined network and cannot be removed")
        users = self.users(net.name)
        if users:
            names = ", ".join(f"{n} ({ns})" if ns != self.client.namespace else n for ns, _, n in users[:5])
            raise FailedPrecondition(
                f"network {net.name!r} is in use by container(s) {names}{' ...' if len(users) > 5 else ''}: "
                "remove them first"
            )
        self.manager.remove(net)
        return net

    def prune(self) -> builtins.list[str]:
        """Remove every network ctrstore made that no container is on (the default network
        stays); their names."""
        from ctrstore.network.conflist import DEFAULT_NETWORK

        used = {n for _, c in self._all_options() for n in c}
        out = []
        for net in self.manager.store.list():
            if net.pseudo or not net.managed or net.name == DEFAULT_NETWORK or net.name in used:
                continue
            self.manager.remove(net)
            out.append(net.name)
        return out

    def _all_options(self) -> builtins.list[tuple[str, builtins.list[str]]]:
        out = []
        for ns in self.client.namespaces.list():
            for c in self.client.metadata.containers(ns.name).list():
                try:
                    opts = network_options(c)
                except CtrstoreError:
                    continue
                if opts is not None:
                    out.append((c.id, opts.networks))
        return out

    def inspect(self, net: Network) -> dict[str, Any]:
        """docker's ``network inspect`` of ``net``, with the containers of this namespace
        attached to it now."""
        from ctrstore.network.attach import Record, addresses

        created = ""
        if net.file is not None:
            from datetime import datetime

            from ctrstore._timeutil import format_rfc3339

            try:
                created = format_rfc3339(datetime.fromtimestamp(net.file.stat().st_mtime, UTC))
            except OSError:
                created = ""
        containers: dict[str, Any] = {}
        tasks = self._tasks()
        ns = self.client.namespace
        for _, cid, name in [u for u in self.users(net.name) if u[0] == ns]:
            try:
                rec = Record.load(tasks.bundle(ns, cid).network_record)
            except CtrstoreError:
                rec = None
            for att in rec.networks() if rec is not None else []:
                if att.network != net.name:
                    continue
                addrs = addresses(att.result)
                containers[cid] = {
                    "Name": name,
                    "MacAddress": addrs[0]["mac"] if addrs else "",
                    "IPv4Address": next((a["address"] for a in addrs if ":" not in a["ip"]), ""),
                    "IPv6Address": next((a["address"] for a in addrs if ":" in a["ip"]), ""),
                }
        options = {"com.docker.network.bridge.name": net.bridge} if net.bridge else {}
        return {
            "Name": net.name,
            "Id": net.id,
            "Created": created,
            "Scope": "local",
            "Driver": net.driver,
            "EnableIPv6": any(s.version == 6 for s in net.subnets),
            "IPAM": {
                "Driver": "default" if net.ipam_ranges else "",
                "Config": [
                    {
                        k: v
                        for k, v in (
                            ("Subnet", r.get("subnet", "")),
                            ("Gateway", r.get("gateway", "")),
                            (
                                "IPRange",
                                f"{r['rangeStart']}-{r['rangeEnd']}"
                                if "rangeStart" in r and "rangeEnd" in r
                                else "",
                            ),
                        )
                        if v
                    }
                    for r in net.ipam_ranges
                ],
            },
            "Internal": bool(net.plugins) and not net.has_plugin("portmap") and net.driver == "bridge",
            "Containers": containers,
            "Options": options,
            "Labels": net.labels,
            "File": str(net.file) if net.file else "",
        }

    # -- stale attachments ---------------------------------------------------------------------
    def stale(self) -> builtins.list[RecordRef]:
        """Records of containers whose networking is left over (see the module's docstring)."""
        from ctrstore.network.attach import Record
        from ctrstore.network.netns import is_netns

        out = []
        tasks = self._tasks()
        existing: dict[str, set[str]] = {}
        for ref in self.manager.records():
            if ref.namespace not in existing:
                try:
                    existing[ref.namespace] = {
                        c.id for c in self.client.metadata.containers(ref.namespace).list()
                    }
                except CtrstoreError:
                    existing[ref.namespace] = set()
            if ref.container not in existing[ref.namespace]:
                out.append(ref)
                continue
            try:
                rec = Record.load(ref.path)
            except CtrstoreError:
                out.append(ref)
                continue
            if rec is None:
                continue
            if not is_netns(Path(rec.netns)):
                out.append(ref)
                continue
            try:
                age = time.time() - ref.path.stat().st_mtime
            except OSError:
                continue
            if age < RECORD_GRACE_SECONDS:
                continue
            t = tasks.tasks(ref.namespace, self.client.config)
            st = t.status(ref.container)
            if st.status in ("running", "paused"):
                continue
            if st.status == "created" and t.bundle(ref.container).recorder_alive():
                continue
            out.append(ref)
        return out

    def check(self) -> builtins.list[tuple[RecordRef, builtins.list[str]]]:
        """CNI CHECK of the networking of every container whose task runs (``ctrstore check``):
        the records with problems, and the problems."""
        from ctrstore.network.attach import check

        out = []
        stale = {r.path for r in self.stale()}
        tasks = self._tasks()
        for ref in self.manager.records():
            if ref.path in stale:
                continue
            if tasks.tasks(ref.namespace, self.client.config).status(ref.container).status != "running":
                continue
            try:
                problems = check(ref.path)
            except CtrstoreError as e:
                problems = [str(e)]
            if problems:
                out.append((ref, problems))
        return out

    def cleanup(self, *, dry_run: bool = False) -> tuple[builtins.list[str], builtins.list[str]]:
        """Tear down the stale records (:meth:`stale`): ``(done, failed)``, each entry
        ``<namespace>/<id>`` (failed ones with the reason)."""
        done: builtins.list[str] = []
        failed: builtins.list[str] = []
        for ref in self.stale():
            what = f"{ref.namespace}/{ref.container}"
            if dry_run:
                done.append(what)
                continue
            try:
                self.teardown(ref)
            except CtrstoreError as e:
                failed.append(f"{what}: {e}")
                continue
            done.append(what)
        if dry_run:
            return done, failed
        try:  # members of the hosts store no longer attached (a record gone without a detach)
            self.manager.prune_hosts()
        except CtrstoreError as e:
            failed.append(f"the hosts store: {e}")
        return done, failed

    def teardown(self, ref: RecordRef) -> None:
        """Tear one record down (see ``NetworkManager.teardown``)."""
        self.manager.teardown(self._tasks().bundle(ref.namespace, ref.container))
