"""Pulling an image: resolve a reference, fetch its index, manifest, config and layers into the
content store (verified, resumable, several at a time), label each parent blob with its
children so gc keeps what images need, unpack the layers into snapshots while later layers are
still downloading, and name the image. Everything happens under a lease, so a gc running at
the same time cannot take half-pulled content.

Blob refs are containerd's: ``index-sha256:...``, ``manifest-...``, ``config-...``,
``layer-...``. A second pull of the same image finds everything present and fetches nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from ctrstore.content import Descriptor
from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from ctrstore.images import (
    MAX_INDEX_DEPTH,
    check_document_size,
    check_layer_count,
    gc_child_labels,
    parse_children,
    read_config,
    read_json,
)
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform, host, rank
from ctrstore.metadata.content import Writer
from ctrstore.metadata.images import Image
from ctrstore.stream import LiveIngests
from ctrstore.unpack import Layer, Unpacker, UnpackResult, plan_layers

if TYPE_CHECKING:
    from ctrstore.client import Client

__all__ = ["Fetcher", "PullResult", "Puller", "Status"]

CHUNK = 1 << 20


class Fetcher(Protocol):
    """Where blobs come from (a registry, an archive...)."""

    def fetch(self, desc: Descriptor, offset: int = 0) -> tuple[IO[bytes], int]:
        """A stream of the blob's bytes starting at the returned offset (``offset`` if the
        source could resume there, else 0)."""
        ...


@dataclass
class Status:
    """One line of pull progress: a blob (by its ref key) or the image itself."""

    key: str
    state: str
    """resolving, resolved, waiting, downloading, done, exists, extracting, unpacked, error"""
    offset: int = 0
    total: int = 0


@dataclass
class PullResult:
    image: Image
    fetched: list[str] = field(default_factory=list)
    """Blobs downloaded (digests); empty on a pull that found everything present."""
    unpacked: UnpackResult | None = None


def ref_key(desc: Descriptor) -> str:
    return f"{mt.ref_prefix(desc.media_type)}-{desc.digest}"


class Puller:
    def __init__(
        self,
        client: Client,
        fetcher: Fetcher,
        *,
        source_labels: dict[str, str] | None = None,
        max_concurrent_downloads: int = 3,
        progress: Callable[[Status], None] | None = None,
    ) -> None:
        self.client = client
        self.fetcher = fetcher
        self.source_labels = dict(source_labels or {})
        self.workers = max_concurrent_downloads
        self.progress = progress or (lambda s: None)
        self.fetched: list[str] = []
        self._lock = threading.Lock()
        self._live = LiveIngests()  # layer downloads the unpack follows (ctrstore.stream)
        self._full_disk: list[Descriptor] = []  # layer downloads that found the disk full

    # -- one blob --------------------------------------------------------------------------
    def fetch_blob(self, desc: Descriptor, labels: dict[str, str] | None = None) -> None:
        """Make sure ``desc`` is in the content store, downloading (or resuming) it if not."""
        key = ref_key(desc)
        if desc.size <= 0:
            raise InvalidArgument(f"{key}: descriptor has size {desc.size}")
        content = self.client.content
        lb = {**self.source_labels, **(labels or {})}
        try:
            w = content.writer(key, total=desc.size, expected=desc.digest, wait=60)
        except AlreadyExists:
            if lb:
                content.set_labels(desc.digest, lb)
            self.progress(Status(key, "exists", desc.size, desc.size))
            return
        with w:
            if not w.complete and w.offset < desc.size:
                self._download(desc, w)
            try:
                w.commit(desc.size, desc.digest, lb)
            except AlreadyExists:
                if lb:
                    content.set_labels(desc.digest, lb)
            except FailedPrecondition as e:
                # The bytes are wrong: drop them so the next pull starts clean.
                w.close()
                try:
                    content.abort(key)
                except NotFound:
                    pass
                raise FailedPrecondition(f"{key}: the registry sent bad content: {e}") from None
        with self._lock:
            self.fetched.append(desc.digest)
        self.progress(Status(key, "done", desc.size, desc.size))

    def _download(self, desc: Descriptor, w: Writer) -> None:
        key = ref_key(desc)
        stream, start = self.fetcher.fetch(desc, w.offset)
        try:
            if start != w.offset:
                w.truncate(0)
            watch = self._live.publish(desc.digest, w.watch)
            self.progress(Status(key, "downloading", w.offset, desc.size))
            while w.offset <= desc.size:
                n = CHUNK if watch is None else self._live.pace(desc.digest, watch, CHUNK)
                chunk = stream.read(min(n, desc.size - w.offset + 1))
                if not chunk:
                    break
                w.write(chunk)
                self.progress(Status(key, "downloading", w.offset, desc.size))
        finally:
            stream.close()
        if w.offset < desc.size:
            raise Unavailable(
                f"{key}: the download ended after {w.offset} of {desc.size} bytes; "
                "pull again to resume where it stopped"
            )
        if w.offset > desc.size:
            w.truncate(0)
            raise FailedPrecondition(f"{key}: the registry sent more than the {desc.size} bytes expected")

    # -- the image -------------------------------------------------------------------------
    def pull(
        self,
        name: str,
        root: Descriptor,
        *,
        platform: Platform | None = None,
        all_platforms: bool = False,
        unpack: bool = True,
        snapshotter: str | None = None,
    ) -> PullResult:
        client = self.client
        mt.check_supported(root.media_type, f"{name}: {ref_key(root)}")
        want = platform or host()
        result_unpack: UnpackResult | None = None
        with (
            client.lease(),
            self._tidy_after_full_disk(),
            ThreadPoolExecutor(self.workers, thread_name_prefix="ctrstore-fetch") as pool,
        ):
            manifests = self._resolve_manifests(root, want, all_platforms)
            for i, mdesc in enumerate(manifests):
                r = self._pull_manifest(mdesc, pool, unpack and i == 0, snapshotter)
                result_unpack = result_unpack or r
            image = Image(name, Descriptor(root.media_type, root.digest, root.size))
            try:
                image = client.images.create(image)
            except AlreadyExists:
                image = client.images.update(image, ["target"])
        return PullResult(image, list(self.fetched), result_unpack)

    def _resolve_manifests(
        self, root: Descriptor, want: Platform, all_platforms: bool, depth: int = 0
    ) -> list[Descriptor]:
        """Fetch indexes down to the manifests to pull (best platform match first)."""
        if mt.is_manifest(root.media_type):
            return [root]
        if not mt.is_index(root.media_type):
            raise InvalidArgument(f"{ref_key(root)}: {root.media_type} is neither a manifest nor an index")
        if depth >= MAX_INDEX_DEPTH:
            raise InvalidArgument(f"{ref_key(root)}: indexes nested more than {MAX_INDEX_DEPTH} levels deep")
        check_document_size(root, ref_key(root))
        self.fetch_blob(root)
        kids = parse_children(root, read_json(self.client.content, root))
        chosen: list[tuple[int, Descriptor]] = []
        for k in kids:
            r = rank(k.platform, want)
            if all_platforms and not (k.platform and k.platform.get("os") == "unknown"):
                chosen.append((r if r is not None else 99, k))
            elif r is not None:
                chosen.append((r, k))
        if not chosen:
            plats = ", ".join(str(Platform.from_json(k.platform)) for k in kids if k.platform) or "none"
            raise NotFound(f"{ref_key(root)}: no manifest for platform {want} (the index has: {plats})")
        chosen.sort(key=lambda c: c[0])
        picked = [k for _, k in chosen] if all_platforms else [chosen[0][1]]
        self.client.content.set_labels(root.digest, gc_child_labels(root, picked))
        out: list[Descriptor] = []
        for k in picked:
            mt.check_supported(k.media_type, ref_key(k))
            if mt.is_index(k.media_type):
                out += self._resolve_manifests(k, want, all_platforms, depth + 1)
            else:
                out.append(k)
        return out

    def _pull_manifest(
        self, mdesc: Descriptor, pool: ThreadPoolExecutor, unpack: bool, snapshotter: str | None
    ) -> UnpackResult | None:
        client = self.client
        content = client.content
        check_document_size(mdesc, ref_key(mdesc))
        self.fetch_blob(mdesc)
        manifest = read_json(content, mdesc)
        kids = parse_children(mdesc, manifest)
        config, layers = kids[0], kids[1:]
        for d in kids:
            mt.check_supported(d.media_type, ref_key(d))
        check_layer_count(len(layers), client.config.max_layers, ref_key(mdesc))
        check_document_size(config, ref_key(config))
        self.fetch_blob(config)
        plan = plan_layers(
            manifest, read_config(content, config), ref_key(mdesc), max_layers=client.config.max_layers
        )
        sn = client.snapshotter(snapshotter) if unpack else None
        # As many layers are applied at once (overlay) as are downloaded: each is followed.
        unpacker = (
            Unpacker(content, sn, tmp_dir=client.root / "tmpmounts", workers=max(2, self.workers))
            if sn is not None
            else None
        )
        # Every layer blob is fetched, even one whose snapshot exists: the image must be whole
        # in this namespace's content store (push, export and ``images check`` need the
        # blobs), and snapshots are shared by chainID with images whose blobs differ (a gzip
        # and a zstd twin) or whose blobs gc took (an image removed while a container held
        # its snapshots). A blob already present costs one meta.db transaction, which also
        # puts it under this pull's lease.
        futures: dict[str, Future[None]] = {}
        if unpacker is not None:
            self._live.expect(layer.desc.digest for layer in plan)
        for layer in plan:
            if layer.desc.digest not in futures:
                self.progress(Status(ref_key(layer.desc), "waiting", 0, layer.desc.size))
                futures[layer.desc.digest] = pool.submit(self._fetch_layer, layer.desc)
        try:
            result = None
            if unpacker is not None:

                def ready(layer: Layer) -> None:
                    futures[layer.desc.digest].result()

                result = unpacker.unpack(
                    config, plan, blob_ready=ready, on_layer=self._on_layer, streams=self._live
                )
            for f in futures.values():
                f.result()
        except BaseException:
            self._live.cancel("the pull was given up")
            for f in futures.values():
                f.cancel()
            raise
        content.set_labels(mdesc.digest, gc_child_labels(mdesc, [config, *layers]))
        return result

    def _fetch_layer(self, desc: Descriptor) -> None:
        """``fetch_blob`` for a layer, which the unpack may be following (``ctrstore.stream``)."""
        try:
            self.fetch_blob(desc)
        except ResourceExhausted:
            self._full_disk.append(desc)
            raise
        finally:
            self._live.over(desc.digest)

    @contextmanager
    def _tidy_after_full_disk(self) -> Iterator[None]:
        """Once a pull that found the disk full has stopped (every download and applier, and
        the failed layers' files removed), settle the layer commits that could not write their
        record (``ContentStore.settle_commit``): layers are applied while they download, so an
        applier can fill the disk just as a download commits."""
        try:
            yield
        except BaseException:
            for desc in self._full_disk:
                with suppress(CtrstoreError):
                    self.client.content.settle_commit(
                        ref_key(desc), desc.digest, desc.size, self.source_labels
                    )
            raise

    def _on_layer(self, layer: Layer, state: str) -> None:
        self.progress(Status(f"unpack-{layer.chain_id}", state, 0, 0))
