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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from ctrstore.config import Config, check_dir_option, load
from ctrstore.errdefs import CtrstoreError, NotFound
from ctrstore.images import Resolved, resolve
from ctrstore.images.platforms import Platform
from ctrstore.labels import DISTRIBUTION_SOURCE, GC_ROOT, LEASE_OWNER
from ctrstore.metadata import (
    ContentStore,
    ImageStore,
    Lease,
    LeaseManager,
    Metadata,
    NamespaceStore,
    SnapshotStore,
)
from ctrstore.metadata.db import validate_identifier
from ctrstore.metadata.leases import process_owner
from ctrstore.plugin import METADATA, RUNTIME, PluginSet

if TYPE_CHECKING:
    from ctrstore.archive import ApplyStats
    from ctrstore.client.containers import ContainerManager
    from ctrstore.client.pull import PullResult
    from ctrstore.images.pull import Status
    from ctrstore.metadata.check import CheckReport
    from ctrstore.metadata.gc import GCResult
    from ctrstore.metadata.images import Image
    from ctrstore.runtime.tasks import Tasks
    from ctrstore.unpack import UnpackResult

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
    def __init__(
        self,
        *,
        root: str | os.PathLike[str] | None = None,
        state: str | os.PathLike[str] | None = None,
        namespace: str | None = None,
        config: Config | str | os.PathLike[str] | None = None,
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
        if cfg.external_plugins:
            builtins.load_external()
        self.namespace = validate_identifier(
            "namespace", namespace or os.environ.get("CTRSTORE_NAMESPACE") or DEFAULT_NAMESPACE
        )
        self.root = Path(cfg.root)
        self.state = Path(cfg.state)
        self.plugins = PluginSet(self.root, self.state, cfg.plugins, set(cfg.disabled_plugins))
        self._lease: str | None = None

    @property
    def metadata(self) -> Metadata:
        return self.plugins.get_single(METADATA, Metadata)

    @property
    def namespaces(self) -> NamespaceStore:
        return self.metadata.namespaces

    @property
    def content(self) -> ContentStore:
        """The namespace's content store (writing under the active lease, if any)."""
        return self.metadata.content(self.namespace, lease=self._lease)

    @property
    def images(self) -> ImageStore:
        return self.metadata.images(self.namespace, lease=self._lease)

    def snapshotter(self, name: str | None = None) -> SnapshotStore:
        """A snapshotter (default: the config's ``snapshotter``, overlayfs) in this namespace."""
        return self.metadata.snapshotter(name or self.config.snapshotter, self.namespace, lease=self._lease)

    @property
    def tasks(self) -> Tasks:
        """The tasks of this namespace, run by the runtime plugin (``io.containerd.runtime.v2``
        ``task``, see ``ctrstore.runtime.tasks``); the runtime binary is the config's
        ``runtime``, read at each use."""
        from ctrstore.runtime.manager import TaskManager

        return self.plugins.get_single(RUNTIME, TaskManager).tasks(self.namespace, self.config)

    @property
    def containers(self) -> ContainerManager:
        """Containers and their tasks in this namespace (see ``ctrstore.client.containers``)."""
        from ctrstore.client.containers import ContainerManager

        def unpack(name: str, snapshotter: str | None, platform: Platform | None) -> UnpackResult:
            return self.unpack(name, snapshotter=snapshotter, platform=platform)

        return ContainerManager(
            store=self.metadata.containers(self.namespace),
            images=self.images,
            content=self.content,
            snapshotter=self.snapshotter,
            unpack=unpack,
            tasks=self.tasks,
        )

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
        self._lease = lease.id
        try:
            yield lease
        except BaseException:
            self._lease = None
            if not keep:
                try:
                    self.leases.delete(lease.id)
                except CtrstoreError:
                    pass  # e.g. a full disk: the first error is the one to report; gc frees it
            raise
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
            md = self.metadata
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

    def commit(self, container: str, name: str, *, compression: Literal["gzip", "zstd"] = "gzip") -> Image:
        """Image ``name``: the image of ``container`` (its id, name or a unique id prefix) plus
        one layer with the container's changes (see ``ctrstore.client.commit``)."""
        from ctrstore.client.commit import commit_container

        return commit_container(self, container, name, compression=compression)

    def import_archive(self, path: str | os.PathLike[str]) -> list[Image]:
        """Import an OCI layout tar or a ``docker save`` tar; returns the images named
        (see ``ctrstore.client.archive``)."""
        from ctrstore.client.archive import import_archive

        return import_archive(self, path)

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
        """Remove everything no root references (see ``ctrstore.metadata.gc``)."""
        return self.metadata.gc(dry_run=dry_run)

    def close(self) -> None:
        for p in self.plugins:
            closer = getattr(p.instance, "close", None)
            if callable(closer):
                closer()
