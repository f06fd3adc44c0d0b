"""Fetching an image's blobs into a content store: the part of a pull that takes roles (a
content store to write to, a ``Fetcher`` to read from), as containerd's ``remotes`` fetch
handlers and ``images`` children handlers do. The client (``ctrstore.client.pull``) resolves
the reference, holds the lease, unpacks and names the image.

A ``Download`` walks from an image's root down: indexes to the manifests for the wanted
platform, each manifest to its config and layers; every blob is fetched (or resumed) into a
verified ingest, several at a time, and each parent blob is labelled with its children
(``containerd.io/gc.ref.content.*``) so that gc keeps what images need. With an unpacker, each
layer is applied while it downloads: the unpack follows the layer's ingest as it grows
(``ctrstore.stream``), and downloads nobody follows yield the bandwidth to followed ones.

Blob refs are containerd's: ``index-sha256:...``, ``manifest-...``, ``config-...``,
``layer-...``. A blob already in the namespace is not fetched again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Protocol

from ctrstore.config import DEFAULT_MAX_LAYERS
from ctrstore.content import Descriptor, Store, Writer
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
from ctrstore.images.platforms import Platform, rank
from ctrstore.stream import LiveIngests
from ctrstore.unpack import Layer, Unpacker, UnpackResult, plan_layers

__all__ = ["Download", "Fetcher", "Status", "ref_key"]

CHUNK = 1 << 20


class Fetcher(Protocol):
    """Where blobs come from (a registry, an archive...).

    Optional, as ``remotes.docker.Fetcher`` has them: a stream with a ``source`` attribute
    (which host its bytes come from, shown in the progress), and a ``distrust(desc)`` method,
    asked when the bytes fetched for ``desc`` fail verification; True means the fetcher will
    now fetch it from a source it trusts more (the registry itself rather than a mirror), so
    the blob is fetched again from 0."""

    def fetch(self, desc: Descriptor, offset: int = 0) -> tuple[IO[bytes], int]:
        """A stream of the blob's bytes starting at the returned offset (``offset`` if the
        source could resume there, else 0)."""
        ...


@dataclass
class Status:
    """One line of pull progress: a blob (by its ref key) or the image itself."""

    key: str
    state: str
    """resolving, resolved, waiting, downloading, retrying, done, exists, extracting, unpacked, error"""
    offset: int = 0
    total: int = 0
    source: str = ""
    """Where a download's bytes come from (a host, or hosts in order when one failed mid-blob)."""


class _Distrusted(Exception):
    """A blob's bytes failed verification and came (partly) from a source the fetcher has now
    stopped using for it: fetch it again."""


def ref_key(desc: Descriptor) -> str:
    return f"{mt.ref_prefix(desc.media_type)}-{desc.digest}"


class Download:
    """One pull's fetching: blobs from ``fetcher`` into ``content`` (which should write under
    the pull's lease), labelled with ``source_labels``; ``fetched`` lists what was
    downloaded."""

    def __init__(
        self,
        content: Store,
        fetcher: Fetcher,
        *,
        source_labels: dict[str, str] | None = None,
        progress: Callable[[Status], None] | None = None,
        max_layers: int = DEFAULT_MAX_LAYERS,
    ) -> None:
        self.content = content
        self.fetcher = fetcher
        self.source_labels = dict(source_labels or {})
        self.progress = progress or (lambda s: None)
        self.max_layers = max_layers
        self.fetched: list[str] = []
        self.sources: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live = LiveIngests()  # layer downloads the unpack follows (ctrstore.stream)
        self._full_disk: list[Descriptor] = []  # layer downloads that found the disk full

    # -- one blob --------------------------------------------------------------------------
    def fetch_blob(self, desc: Descriptor, labels: dict[str, str] | None = None) -> None:
        """Make sure ``desc`` is in the content store, downloading (or resuming) it if not."""
        key = ref_key(desc)
        if desc.size <= 0:
            raise InvalidArgument(f"{key}: descriptor has size {desc.size}")
        content = self.content
        lb = {**self.source_labels, **(labels or {})}
        while True:
            w: Writer | None
            try:
                w = content.writer(key, total=desc.size, expected=desc.digest, wait=60)
            except AlreadyExists:
                w = None  # the namespace holds it already
            try:
                source = self._write(desc, w, lb) if w is not None else None
            except _Distrusted:
                continue  # (once: the fetcher now takes this blob from the registry only)
            break
        if source is None and lb:
            content.set_labels(desc.digest, lb)  # a blob stored before gets the labels all the same
        if w is None:
            self.progress(Status(key, "exists", desc.size, desc.size))
            return
        with self._lock:
            self.fetched.append(desc.digest)
            self.sources[desc.digest] = source or ""
        self.progress(Status(key, "done", desc.size, desc.size, source or ""))

    def _write(self, desc: Descriptor, w: Writer, labels: dict[str, str]) -> str | None:
        """Download into ``w`` (resuming) and commit; returns where the bytes came from, or
        None if the namespace got the blob from another writer meanwhile."""
        key = ref_key(desc)
        source = ""
        with w:
            if not w.complete and w.offset < desc.size:
                source = self._download(desc, w)
            try:
                w.commit(desc.size, desc.digest, labels)
            except AlreadyExists:
                return None
            except FailedPrecondition as e:
                # The bytes are wrong: drop them so the next pull starts clean.
                w.close()
                try:
                    self.content.abort(key)
                except NotFound:
                    pass
                distrust = getattr(self.fetcher, "distrust", None)
                if distrust is not None and distrust(desc):
                    # Some bytes came from a mirror (or an earlier pull): again, from the registry.
                    why = f"the bytes from {source or 'an earlier pull'} do not match the digest"
                    self.progress(Status(key, "retrying", 0, desc.size, why))
                    raise _Distrusted from None
                raise FailedPrecondition(f"{key}: the registry sent bad content: {e}") from None
        return source

    def _download(self, desc: Descriptor, w: Writer) -> str:
        """Fetch the rest of ``desc`` into ``w``; returns where it came from."""
        key = ref_key(desc)
        stream, start = self.fetcher.fetch(desc, w.offset)
        source = str(getattr(stream, "source", ""))
        try:
            if start != w.offset:
                w.truncate(0)
            watch = self._live.publish(desc.digest, w.watch)
            self.progress(Status(key, "downloading", w.offset, desc.size, source))
            while w.offset <= desc.size:
                n = CHUNK if watch is None else self._live.pace(desc.digest, watch, CHUNK)
                chunk = stream.read(min(n, desc.size - w.offset + 1))
                if not chunk:
                    break
                w.write(chunk)
                source = str(getattr(stream, "source", ""))
                self.progress(Status(key, "downloading", w.offset, desc.size, source))
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
        return source

    # -- the tree --------------------------------------------------------------------------
    def manifests(
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
        kids = parse_children(root, read_json(self.content, root))
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
        self.content.set_labels(root.digest, gc_child_labels(root, picked))
        out: list[Descriptor] = []
        for k in picked:
            mt.check_supported(k.media_type, ref_key(k))
            if mt.is_index(k.media_type):
                out += self.manifests(k, want, all_platforms, depth + 1)
            else:
                out.append(k)
        return out

    def manifest(
        self, mdesc: Descriptor, pool: ThreadPoolExecutor, unpacker: Callable[[], Unpacker] | None
    ) -> UnpackResult | None:
        """Fetch a manifest, its config and its layers (on ``pool``); with ``unpacker`` (called
        once the layers are planned), unpack each layer while its blob downloads, once the
        layers below it are there."""
        content = self.content
        check_document_size(mdesc, ref_key(mdesc))
        self.fetch_blob(mdesc)
        manifest = read_json(content, mdesc)
        kids = parse_children(mdesc, manifest)
        config, layers = kids[0], kids[1:]
        for d in kids:
            mt.check_supported(d.media_type, ref_key(d))
        check_layer_count(len(layers), self.max_layers, ref_key(mdesc))
        check_document_size(config, ref_key(config))
        self.fetch_blob(config)
        plan = plan_layers(manifest, read_config(content, config), ref_key(mdesc), max_layers=self.max_layers)
        unpack = unpacker() if unpacker is not None else None
        # Every layer blob is fetched, even one whose snapshot exists: the image must be whole
        # in this namespace's content store (push, export and ``images check`` need the
        # blobs), and snapshots are shared by chainID with images whose blobs differ (a gzip
        # and a zstd twin) or whose blobs gc took (an image removed while a container held
        # its snapshots). A blob already present costs one meta.db transaction, which also
        # puts it under this pull's lease.
        futures: dict[str, Future[None]] = {}
        if unpack is not None:
            self._live.expect(layer.desc.digest for layer in plan)
        for layer in plan:
            if layer.desc.digest not in futures:
                self.progress(Status(ref_key(layer.desc), "waiting", 0, layer.desc.size))
                futures[layer.desc.digest] = pool.submit(self._fetch_layer, layer.desc)
        try:
            result = None
            if unpack is not None:

                def ready(layer: Layer) -> None:
                    futures[layer.desc.digest].result()

                result = unpack.unpack(
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
    def tidy_after_full_disk(self) -> Iterator[None]:
        """Around a whole pull (outside the pool, so that it exits once every download and
        applier stopped, and the failed layers' files were removed): if the pull fails, settle
        the layer commits that found the disk full and could not write their record
        (``Ingester.settle_commit``). Layers are applied while they download, so an applier can
        fill the disk just as a download commits."""
        try:
            yield
        except BaseException:
            for desc in self._full_disk:
                with suppress(CtrstoreError):
                    self.content.settle_commit(ref_key(desc), desc.digest, desc.size, self.source_labels)
            raise

    def _on_layer(self, layer: Layer, state: str) -> None:
        self.progress(Status(f"unpack-{layer.chain_id}", state, 0, 0))
