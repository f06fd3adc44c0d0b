"""``Client``: one store (a root and a state directory) seen from one namespace.

There is no daemon: a Client initialises the plugins itself, and several Clients — in one
process or many — can use the same root at once (meta.db and the content store lock what
they must).

The Client opens the store and hands out its roles (content, images, snapshotters,
containers, leases); what needs several of them together is orchestrated in this package's
other modules — ``pull``, ``push``, ``containers``, ``commit``, ``archive`` — as containerd's
``client`` package does. Everything below takes roles, never the Client.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal, Unpack, overload

from ctrstore.config import Config, check_dir_option, load
from ctrstore.errdefs import CtrstoreError, FailedPrecondition, NotFound
from ctrstore.images import Resolved, resolve
from ctrstore.images.platforms import Platform
from ctrstore.labels import DISTRIBUTION_SOURCE, GC_ROOT, LEASE_OWNER
from ctrstore.metadata import (
    ContentStore,
    Lease,
    LeaseManager,
    Metadata,
    NamespaceStore,
    SnapshotStore,
)
from ctrstore.metadata.db import validate_identifier
from ctrstore.metadata.images import Image
from ctrstore.metadata.leases import process_owner
from ctrstore.mount import remove_stale_temp_mounts
from ctrstore.plugin import METADATA, RUNTIME, PluginSet

if TYPE_CHECKING:
    from ctrstore.archive import ApplyStats
    from ctrstore.client.api import Containers, Images, RunOptions
    from ctrstore.client.housekeeping import DiskUsage, SystemPruneReport
    from ctrstore.client.networks import Networks
    from ctrstore.client.objects import Container, ImageView, RunResult
    from ctrstore.client.pull import PullResult
    from ctrstore.images.pull import Status
    from ctrstore.metadata.check import CheckReport
    from ctrstore.metadata.gc import GCResult
    from ctrstore.metadata.images import Image
    from ctrstore.network import NetworkOptions
    from ctrstore.network.manager import NetworkManager
    from ctrstore.oci.spec import SpecOptions
    from ctrstore.runtime.tasks import Tasks
    from ctrstore.unpack import UnpackResult
    from ctrstore.volumes import VolumeStore

__all__ = ["DEFAULT_NAMESPACE", "Client", "ImageCheck"]

DEFAULT_NAMESPACE = "default"
DEFAULT_LEASE_EXPIRY = timedelta(hours=24)


@dataclass(frozen=True)
class ImageCheck:
    name: str
    complete: bool
    """Every blob of the manifest for this platform is in the content store."""
    missing: list[str]
    unpacked: bool
    error: str


class Client:
    """One store (``root``, ``state``; default: the config's) seen from one namespace.

    Use it as a context manager (``with Client(...) as client:``): leaving the block releases
    a lease a ``with client.lease()`` block left open and closes the store's databases.

    Made by an ordinary user (rootless), the Client first moves this process into the user's
    namespace, as every CLI command does (``ctrstore.rootless.userns``): the process is then
    uid 0 there (the user on disk) for the rest of its life, and sees the store's mounts. That
    needs a single-threaded process: make the Client before starting threads (else
    ``Unavailable`` says so), or run the program under ``ctrstore unshare``. ``userns=False``
    keeps the process as it is, for what needs no namespace (reading the content store,
    listing images)."""

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        state: str | os.PathLike[str] | None = None,
        namespace: str | None = None,
        config: Config | str | os.PathLike[str] | None = None,
        userns: bool = True,
    ) -> None:
        import ctrstore.plugins.builtins as builtins

        if isinstance(config, Config):
            cfg = config
            if root is not None:
                cfg.root = check_dir_option("root", str(root))
            if state is not None:
                cfg.state = check_dir_option("state", str(state))
        else:
            cfg = load(
                config, root=None if root is None else str(root), state=None if state is None else str(state)
            )
        self.config = cfg
        if userns and os.getuid() != 0:
            from ctrstore.rootless.userns import enter_for

            enter_for(cfg)
        if cfg.external_plugins:
            builtins.load_external()
        self.namespace = validate_identifier(
            "namespace", namespace or os.environ.get("CTRSTORE_NAMESPACE") or DEFAULT_NAMESPACE
        )
        self.root = Path(cfg.root)
        self.state = Path(cfg.state)
        self.plugins = PluginSet(self.root, self.state, cfg.plugins, set(cfg.disabled_plugins))
        self._lease: str | None = None
        self._lease_keep = False
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release the lease of a ``with client.lease()`` block still open (unless it was made
        with ``keep``), then :meth:`close`."""
        try:
            lease, self._lease = self._lease, None
            if lease is not None and not self._lease_keep and not self._closed:
                try:
                    self.leases.delete(lease)
                except NotFound:
                    pass
        finally:
            self.close()

    @property
    def metadata(self) -> Metadata:
        if self._closed:
            raise FailedPrecondition(f"the client of {self.root} is closed")
        return self.plugins.get_single(METADATA, Metadata)

    @property
    def namespaces(self) -> NamespaceStore:
        return self.metadata.namespaces

    @property
    def content(self) -> ContentStore:
        """The namespace's content store (writing under the active lease, if any)."""
        return self.metadata.content(self.namespace, lease=self._lease)

    @property
    def images(self) -> Images:
        """The namespace's image store, whose ``get`` and ``list`` give
        :class:`~ctrstore.client.objects.ImageView`\\ s: records with ``id``, ``tags``,
        ``config`` and ``size`` (see ``ctrstore.client.api.Images``)."""
        from ctrstore.client.api import Images

        return Images(self.metadata.images(self.namespace, lease=self._lease), self.content)

    def snapshotter(self, name: str | None = None) -> SnapshotStore:
        """A snapshotter (default: the config's ``snapshotter``, overlayfs) in this namespace."""
        if name is None and self.config.snapshotter == "overlayfs":
            name = self._default_snapshotter()
        return self.metadata.snapshotter(name or self.config.snapshotter, self.namespace, lease=self._lease)

    def _default_snapshotter(self) -> str:
        """overlayfs, or, rootless where overlay does not mount in the user namespace (its
        plugin skipped, ``plugin ls`` says why), native (issue 13)."""
        from ctrstore.rootless import is_rootless

        if (
            is_rootless()
            and "overlayfs" not in self.metadata.snapshotters
            and "native" in self.metadata.snapshotters
        ):
            self.config.snapshotter = "native"
        return self.config.snapshotter

    @property
    def tasks(self) -> Tasks:
        """The tasks of this namespace, run by the runtime plugin (``io.containerd.runtime.v2``
        ``task``, see ``ctrstore.runtime.tasks``); the runtime binary is the config's
        ``runtime``, read at each use."""
        from ctrstore.runtime.manager import TaskManager

        return self.plugins.get_single(RUNTIME, TaskManager).tasks(self.namespace, self.config)

    @property
    def containers(self) -> Containers:
        """Containers and their tasks in this namespace (see ``ctrstore.client.containers``),
        with docker-py's ``get``, ``list`` and ``run`` (``ctrstore.client.api.Containers``)."""
        from ctrstore.client.api import Containers, remove_command

        def unpack(name: str, snapshotter: str | None, platform: Platform | None) -> UnpackResult:
            return self.unpack(name, snapshotter=snapshotter, platform=platform)

        mgr = Containers(
            store=self.metadata.containers(self.namespace),
            images=self.images,
            content=self.content,
            snapshotter=self.snapshotter,
            unpack=unpack,
            tasks=self.tasks,
            volumes=self._volumes_or_none(),
            network=self.network_plugin,
        )
        mgr.remove_command = lambda cid: remove_command(self, cid)
        return mgr

    @property
    def volumes(self) -> VolumeStore:
        """Named volumes in this namespace (the ``io.containerd.volume.v1.local`` plugin; see
        ``ctrstore.volumes``)."""
        from ctrstore.plugin import VOLUME
        from ctrstore.volumes import LocalVolumes

        return self.plugins.get_single(VOLUME, LocalVolumes).store(self.namespace)

    def _volumes_or_none(self) -> VolumeStore | None:
        """The volumes, or None when the plugin is disabled or skipped (containers then take
        no volume mounts)."""
        from ctrstore.plugin import VOLUME

        if not any(p.registration.type == VOLUME and p.status == "ok" for p in self.plugins):
            if any(p.registration.type == VOLUME and p.status == "error" for p in self.plugins):
                return self.volumes  # raises the plugin's error
            return None
        return self.volumes

    def network_plugin(self) -> NetworkManager:
        """The network plugin's instance (``io.ctrstore.network.v1`` ``cni``, see
        ``ctrstore.network.manager``): conflists and containers' attachments."""
        from ctrstore.network.manager import NetworkManager
        from ctrstore.plugins.network import NETWORK

        return self.plugins.get_single(NETWORK, NetworkManager)

    @property
    def networks(self) -> Networks:
        """The store's networks and who uses them (``ctrstore network``; see
        ``ctrstore.client.networks``)."""
        from ctrstore.client.networks import Networks

        return Networks(self)

    @property
    def leases(self) -> LeaseManager:
        return self.metadata.leases(self.namespace)

    def with_namespace(self, namespace: str) -> Client:
        return Client(config=self.config, namespace=namespace)

    @contextmanager
    def lease(self, *, expire: timedelta = DEFAULT_LEASE_EXPIRY, keep: bool = False) -> Iterator[Lease]:
        """Hold a lease for the block: everything written through this client is kept from gc
        until the block ends (and the lease is deleted, unless ``keep``).

        Unless ``keep``, the lease belongs to this process (``ctrstore.io/lease.owner``): if the
        process dies before the block ends, the next gc treats the lease as expired. Partial
        downloads stay resumable meanwhile, as ingests have their own expiry."""
        if self._lease is not None:
            yield self.leases.list(f"id=={self._lease}")[0]
            return
        labels = {} if keep else {LEASE_OWNER: process_owner()}
        lease = self.leases.create(expire=expire, labels=labels)
        self._lease, self._lease_keep = lease.id, keep
        try:
            yield lease
        except BaseException:
            if self._lease != lease.id:
                raise  # released when the client was closed (``__exit__``)
            self._lease = None
            if not keep:
                try:
                    self.leases.delete(lease.id)
                except CtrstoreError:
                    pass  # e.g. a full disk: the first error is the one to report; gc frees it
            raise
        if self._lease != lease.id:
            return  # released when the client was closed (``__exit__``)
        self._lease = None
        if not keep:
            self.leases.delete(lease.id)

    def pull(
        self,
        ref: str,
        *,
        platform: Platform | None = None,
        all_platforms: bool = False,
        unpack: bool = True,
        snapshotter: str | None = None,
        plain_http: bool = False,
        hosts_dir: str | os.PathLike[str] | None = None,
        max_concurrent_downloads: int = 3,
        progress: Callable[[Status], None] | None = None,
    ) -> PullResult:
        """Pull ``ref`` from its registry into the store, unpack it, and name it (the
        normalised reference, e.g. ``docker.io/library/redis:alpine``): resolve it here, then
        ``ctrstore.client.pull.Puller`` fetches, unpacks and names it."""
        from ctrstore.client.pull import Puller
        from ctrstore.images.pull import Status
        from ctrstore.remotes import Resolver, parse

        reference = parse(ref)
        report = progress or (lambda s: None)
        with Resolver(hosts_dir=hosts_dir, plain_http=plain_http) as resolver:
            report(Status(str(reference), "resolving"))
            name, root = resolver.resolve(reference)
            report(Status(str(reference), "resolved"))
            puller = Puller(
                self,
                resolver.fetcher(reference),
                source_labels={f"{DISTRIBUTION_SOURCE}{reference.domain}": reference.path},
                max_concurrent_downloads=max_concurrent_downloads,
                progress=report,
            )
            return puller.pull(
                name,
                root,
                platform=platform,
                all_platforms=all_platforms,
                unpack=unpack,
                snapshotter=snapshotter,
            )

    def push(
        self,
        name: str,
        ref: str | None = None,
        *,
        plain_http: bool = False,
        hosts_dir: str | os.PathLike[str] | None = None,
        progress: Callable[[Status], None] | None = None,
    ) -> list[tuple[str, str]]:
        """Push image ``name`` to ``ref`` (default: the name itself): resolve it here, then
        ``ctrstore.client.push.push_image`` pushes; returns ``(ref key, outcome)`` per
        descriptor (exists, mounted, uploaded)."""
        from ctrstore.client.push import push_image
        from ctrstore.remotes import Resolver, parse

        reference = parse(ref or name)
        with Resolver(hosts_dir=hosts_dir, plain_http=plain_http) as resolver:
            return push_image(self, name, resolver.pusher(reference), tag=reference.tag, progress=progress)

    def unpack(
        self, name: str, *, platform: Platform | None = None, snapshotter: str | None = None
    ) -> UnpackResult:
        """Unpack a stored image into snapshots (layers already unpacked are skipped)."""
        from ctrstore.images import read_config
        from ctrstore.unpack import Unpacker, plan_layers

        image = self.images.get(name)
        with self.lease():
            content = self.content
            r = resolve(content, image.target, platform)
            layers = plan_layers(
                r.doc, read_config(content, r.config), f"image {name}", max_layers=self.config.max_layers
            )
            unpacker = Unpacker(content, self.snapshotter(snapshotter), tmp_dir=self.root / "tmpmounts")
            return unpacker.unpack(r.config, layers)

    def check(
        self, name: str, *, platform: Platform | None = None, snapshotter: str | None = None
    ) -> ImageCheck:
        """Is every blob of the image present, and is it unpacked?"""
        from ctrstore.images import read_config
        from ctrstore.unpack import plan_layers

        image = self.images.get(name)
        content = self.content
        missing: list[str] = []
        try:
            r = resolve(content, image.target, platform)
        except NotFound as e:
            return ImageCheck(name, False, [image.target.digest], False, str(e))
        for d in (r.config, *r.layers):
            if not content.exists(d.digest):
                missing.append(d.digest)
        unpacked = False
        if r.config.digest not in missing:
            layers = plan_layers(
                r.doc, read_config(content, r.config), f"image {name}", max_layers=self.config.max_layers
            )
            try:
                if layers:
                    self.snapshotter(snapshotter).stat(layers[-1].chain_id)
                    unpacked = True
            except NotFound:
                pass
        return ImageCheck(name, not missing, missing, unpacked, "")

    def resolve(self, image: str | Image, platform: Platform | None = None) -> Resolved:
        """An image (by name) resolved for ``platform``: its manifest, config and layers
        (see ``ctrstore.images.resolve``)."""
        target = (self.images.get(image) if isinstance(image, str) else image).target
        return resolve(self.content, target, platform)

    def mount_image(
        self, name: str, target: str | os.PathLike[str], *, snapshotter: str | None = None
    ) -> str:
        """Mount an image's rootfs read-only at ``target`` (unpacking it first if needed), as
        ``ctr images mount`` does. Returns the view's snapshot key (the absolute target)."""
        from ctrstore.mount import mount_all

        key = str(Path(target).resolve())
        result = self.unpack(name, snapshotter=snapshotter)
        sn = self.snapshotter(snapshotter)
        mounts = sn.view(key, result.chain_id, {GC_ROOT: "images-mount"})
        try:
            mount_all(mounts, key)
        except BaseException:
            sn.remove(key)
            raise
        return key

    def unmount_image(self, target: str | os.PathLike[str], *, snapshotter: str | None = None) -> None:
        from ctrstore.mount import unmount

        key = str(Path(target).resolve())
        unmount(key)
        self.snapshotter(snapshotter).remove(key)

    def check_store(self, *, verify: bool = False, repair: bool = False) -> CheckReport:
        """The store's fsck (see ``ctrstore.metadata.check``): reconcile blobs, ingests,
        snapshots, leases and mounted bundles with the records; ``verify`` hashes every blob
        again; ``repair`` fixes what it can. A meta.db that is lost (missing or empty while the
        store holds data) or corrupt is reported, and with ``repair`` moved aside (if corrupt)
        and rebuilt from the files, after which the whole check runs."""
        from ctrstore.content.local import LocalStore
        from ctrstore.metadata import DB
        from ctrstore.metadata.check import CheckReport, check, lost_or_corrupt, move_aside, rebuild
        from ctrstore.plugin import CONTENT, SNAPSHOT

        pre = CheckReport()
        try:
            md = self.metadata
        except CtrstoreError:
            plugin = next((p for p in self.plugins if p.registration.type == METADATA), None)
            if plugin is None or not lost_or_corrupt(plugin.exc):
                raise
            problem = str(plugin.exc)
            if not repair:
                pre.add("database", problem, "rebuild the records from the files (--repair)")
                return pre
            path = self.root / plugin.uri / "meta.db"
            from ctrstore._sqlite import Corrupt

            if isinstance(plugin.exc, Corrupt):
                problem += f" (moved aside to {move_aside(path).name})"
            content = self.plugins.get_single(CONTENT, LocalStore)
            snapshotters = {
                n: s for n, s in self.plugins.get_by_type(SNAPSHOT).items() if hasattr(s, "gc_cleanup")
            }
            db = DB(path)
            try:
                done = rebuild(db, content, snapshotters)
            finally:
                db.close()
            pre.add("database", problem, "rebuilt: " + "; ".join(done), True)
            self.close()
            self.plugins = PluginSet(
                self.root, self.state, self.config.plugins, set(self.config.disabled_plugins)
            )
            self._closed = False
            md = self.metadata
        self._check_networks(pre, repair)  # (first: an orphan bundle's mounted netns stops its removal)
        report = check(
            md.db,
            md.content_backend,
            md.snapshotters,
            root=self.root,
            state=self.state,
            verify=verify,
            repair=repair,
        )
        report.findings[:0] = pre.findings
        return report

    def _check_networks(self, report: CheckReport, repair: bool) -> None:
        """Networking left by a container that is gone or whose task ended without tearing it
        down (``ctrstore.client.networks``): veths, addresses, iptables rules, namespaces; and
        running containers' networking that CNI CHECK finds wrong (reported, not repaired)."""
        try:
            networks = self.networks
            networks.manager  # noqa: B018  (the plugin may be unavailable: nothing to check)
        except CtrstoreError:
            return
        for ref, problems in networks.check():
            for p in problems:
                report.add(
                    "network",
                    f"container {ref.namespace}/{ref.container}: CNI CHECK: {p}",
                    "restart the container (stop, start) to set its networking up again",
                )
        for ref in networks.stale():
            problem = (
                f"container {ref.namespace}/{ref.container} is not running, its networking is still set up"
            )
            action = "tear it down (CNI DEL, unmount its namespace)"
            if not repair:
                report.add("network", problem, action)
                continue
            try:
                networks.teardown(ref)
            except CtrstoreError as e:
                report.add("network", f"{problem} (repair failed: {e})", action)
                continue
            report.add("network", problem, action, True)
        for member in networks.manager.prune_hosts(dry_run=not repair):
            report.add(
                "network",
                f"container {member} is still named in the /etc/hosts of its networks' containers "
                "but is not attached",
                "remove it from the hosts store (ctrstore.network.hosts_store)",
                repair,
            )

    def commit(
        self, container: str, name: str, *, compression: Literal["gzip", "zstd"] = "gzip"
    ) -> ImageView:
        """Image ``name``: the image of ``container`` (its id, name or a unique id prefix) plus
        one layer with the container's changes (see ``ctrstore.client.commit``)."""
        from ctrstore.client.commit import commit_container

        return self.images.get(commit_container(self, container, name, compression=compression).name)

    def import_archive(self, path: str | os.PathLike[str]) -> list[Image]:
        """Import an OCI layout tar or a ``docker save`` tar; returns the images named
        (see ``ctrstore.client.archive``)."""
        from ctrstore.client.archive import import_archive

        return import_archive(self, path)

    def import_stream(self, stream: IO[bytes]) -> list[Image]:
        """Import an archive read from ``stream`` (e.g. stdin); see
        ``ctrstore.client.archive.import_stream``."""
        from ctrstore.client.archive import import_stream

        return import_stream(self, stream)

    def export_archive(self, images: Sequence[Image], out: IO[bytes]) -> int:
        """Write ``images`` as an OCI layout tar to ``out``; returns the number of blobs."""
        from ctrstore.client.archive import export_archive

        return export_archive(self, images, out)

    def apply_layer(
        self, key: str, layer: str | os.PathLike[str], *, snapshotter: str | None = None
    ) -> ApplyStats:
        """Apply the layer file ``layer`` (tar, tar+gzip or tar+zstd) to the active snapshot
        ``key`` through its mounts (``ctrstore snapshots apply``)."""
        from ctrstore.diff import apply

        return apply(self.snapshotter(snapshotter).mounts(key), layer, tmp_dir=self.root / "tmpmounts")

    def gc(self, *, dry_run: bool = False) -> GCResult:
        """Remove everything no root references (see ``ctrstore.metadata.gc``), after tearing
        down the networking that containers which are gone or stopped left set up (see
        ``ctrstore.client.networks``); and the temporary mounts of processes that were killed
        while they were up."""
        if not dry_run:
            try:
                self.networks.cleanup()
            except CtrstoreError:
                pass  # no network plugin here: nothing of it to clean
        result = self.metadata.gc(dry_run=dry_run)
        result.mounts = remove_stale_temp_mounts(self.root / "tmpmounts", dry_run=dry_run)
        return result

    # -- the everyday API (docs/python-api.md) -----------------------------------------------------
    @overload
    def run(
        self,
        image: str | Image,
        command: str | Sequence[str] | None = None,
        *,
        detach: Literal[False] = False,
        remove: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        network: str | Sequence[str] | NetworkOptions | None = None,
        spec: SpecOptions | None = None,
        **options: Unpack[RunOptions],
    ) -> RunResult: ...

    @overload
    def run(
        self,
        image: str | Image,
        command: str | Sequence[str] | None = None,
        *,
        detach: Literal[True],
        remove: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        network: str | Sequence[str] | NetworkOptions | None = None,
        spec: SpecOptions | None = None,
        **options: Unpack[RunOptions],
    ) -> Container: ...

    def run(
        self,
        image: str | Image,
        command: str | Sequence[str] | None = None,
        *,
        detach: bool = False,
        remove: bool = False,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        snapshotter: str | None = None,
        network: str | Sequence[str] | NetworkOptions | None = None,
        spec: SpecOptions | None = None,
        **options: Unpack[RunOptions],
    ) -> RunResult | Container:
        """Run ``command`` in a new container from ``image``: a :class:`RunResult` (exit
        status, stdout, stderr) once it has exited, or with ``detach=True`` the running
        :class:`Container` (see ``ctrstore.client.api.Containers.run`` for every option)."""
        mgr = self.containers
        if detach:
            return mgr.run(
                image,
                command,
                detach=True,
                remove=remove,
                name=name,
                labels=labels,
                snapshotter=snapshotter,
                network=network,
                spec=spec,
                **options,
            )
        return mgr.run(
            image,
            command,
            remove=remove,
            name=name,
            labels=labels,
            snapshotter=snapshotter,
            network=network,
            spec=spec,
            **options,
        )

    def export(
        self,
        images: str | Image | Sequence[str | Image],
        dest: str | os.PathLike[str] | IO[bytes],
    ) -> int:
        """Write ``images`` (names or images) as one OCI layout tar to ``dest`` (a path, or a
        binary file open for writing); returns the number of blobs written."""
        wanted = [images] if isinstance(images, str | Image) else list(images)
        records = [i if isinstance(i, Image) else self.images.get(i) for i in wanted]
        if isinstance(dest, str | os.PathLike):
            with open(dest, "wb") as out:
                return self.export_archive(records, out)
        return self.export_archive(records, dest)

    def import_(self, source: str | os.PathLike[str]) -> list[ImageView]:
        """Import an OCI layout tar or a ``docker save`` tar; the images it named."""
        return [self.images.get(i.name) for i in self.import_archive(source)]

    def prune(
        self, *, all: bool = False, volumes: bool = False, filters: Sequence[str] = ()
    ) -> SystemPruneReport:
        """``docker system prune``: remove stopped containers, dangling images (``all``: every
        image no container is made from) and, with ``volumes``, unused anonymous volumes,
        then collect garbage. The report has one :class:`~ctrstore.client.housekeeping.
        PruneReport` per kind (``.containers.deleted``, ``.images.deleted``...) and the bytes
        freed (``space_reclaimed``). ``filters`` are docker's (``until=24h``,
        ``label=k=v``). One kind alone: ``ctrstore.client.housekeeping.prune_containers``,
        ``prune_images``, ``prune_volumes``, ``prune_networks``."""
        from ctrstore.client.housekeeping import system_prune

        return system_prune(self, all=all, volumes=volumes, filters=filters)

    def df(self, *, verbose: bool = False) -> DiskUsage:
        """``docker system df``: rows for images, containers, volumes and other data
        (``.images.total``, ``.active``, ``.size``, ``.reclaimable`` bytes: what the matching
        prune gives back); with ``verbose``, one row per image, container and volume too. See
        ``ctrstore.client.housekeeping.disk_usage``."""
        from ctrstore.client.housekeeping import disk_usage

        return disk_usage(self, verbose=verbose)

    def close(self) -> None:
        """Close the store's databases. The client cannot be used afterwards (a new one can)."""
        self._closed = True
        for p in self.plugins:
            closer = getattr(p.instance, "close", None)
            if callable(closer):
                closer()
