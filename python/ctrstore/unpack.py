"""Unpacking an image: each layer into its own snapshot, named by its chainID.

For every layer not yet unpacked: prepare an active snapshot keyed
``extract-<nanos>-<rand> <chainID>`` on the layer below, apply the layer, require the digest of
its whole uncompressed stream to equal the config's ``rootfs.diff_ids[i]``, and commit it as
the chainID. The layer blob is labelled ``containerd.io/uncompressed=<diffID>`` and the config
``containerd.io/gc.ref.snapshot.<snapshotter>=<top chainID>``, so gc keeps exactly the
snapshots images need.

On a snapshotter that can rebase (overlay: an upper dir holds only its layer's own changes),
layers are applied in parallel, each into a parentless snapshot, and each is committed onto
its parent as soon as it and every layer below it are done (so a killed unpack keeps the
layers it finished). Elsewhere they are applied one after another.

A pull unpacks while it downloads (``streams``, see ``ctrstore.stream``): a layer whose blob
is still downloading is applied from its ingest as the bytes arrive, and its snapshot is
committed only once the download's commit has verified the blob (and the diffID matches).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore._core import LayerDecoder
from ctrstore.config import DEFAULT_MAX_LAYERS
from ctrstore.content import Descriptor, Store
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ctrstore.images import chain_ids, check_layer_count, rootfs_diff_ids
from ctrstore.images import mediatypes as mt
from ctrstore.jsondoc import want_list
from ctrstore.labels import (
    GC_REF_SNAPSHOT,
    SNAPSHOT_DIFF_ID,
    SNAPSHOT_PARENT_CHAIN_ID,
    SNAPSHOT_REF,
    UNCOMPRESSED,
)
from ctrstore.mount import Mount
from ctrstore.snapshots import Kind, NamedSnapshotter

if TYPE_CHECKING:
    from ctrstore.archive import ApplyStats
    from ctrstore.stream import LiveIngests

__all__ = ["Layer", "UnpackResult", "Unpacker", "plan_layers"]


@dataclass(frozen=True)
class Layer:
    index: int
    desc: Descriptor
    diff_id: str
    chain_id: str
    parent: str
    """chainID of the layer below ("" for the first)."""


@dataclass
class UnpackResult:
    chain_id: str
    applied: list[Layer]
    skipped: list[Layer]


def plan_layers(
    manifest: dict[str, Any], config: dict[str, Any], what: str, *, max_layers: int = DEFAULT_MAX_LAYERS
) -> list[Layer]:
    """The layers to unpack, bottom first, each with its diffID and chainID. The manifest's
    layers and the config are type-checked; more than ``max_layers`` layers is InvalidArgument
    (before anything is fetched or applied)."""
    entries = want_list(manifest, "layers", what) or []
    check_layer_count(len(entries), max_layers, what)
    layers = [Descriptor.from_json(x, f"{what}: layers[{i}]") for i, x in enumerate(entries)]
    diff_ids = rootfs_diff_ids(config, what)
    if len(layers) != len(diff_ids):
        raise InvalidArgument(
            f"{what}: the manifest has {len(layers)} layers but the config lists {len(diff_ids)} diff_ids"
        )
    for d in layers:
        mt.check_supported(d.media_type, f"layer {d.digest}")
    chains = chain_ids(diff_ids)
    return [Layer(i, d, diff_ids[i], chains[i], chains[i - 1] if i else "") for i, d in enumerate(layers)]


def _key(chain_id: str) -> str:
    return f"extract-{time.time_ns()}-{secrets.token_urlsafe(3)[:4]} {chain_id}"


class Unpacker:
    def __init__(
        self,
        content: Store,
        snapshots: NamedSnapshotter,
        *,
        tmp_dir: Path,
        workers: int = 2,
    ) -> None:
        self.content = content
        self.snapshots = snapshots
        self.tmp_dir = tmp_dir
        self.workers = workers

    def _exists(self, chain_id: str) -> bool:
        try:
            self.snapshots.stat(chain_id)
        except NotFound:
            return False
        return True

    def pending(self, layers: Sequence[Layer]) -> list[Layer]:
        """Layers still to unpack: everything above the highest chainID already present."""
        for i in range(len(layers) - 1, -1, -1):
            if self._exists(layers[i].chain_id):
                return list(layers[i + 1 :])
        return list(layers)

    def unpack(
        self,
        config: Descriptor,
        layers: Sequence[Layer],
        *,
        blob_ready: Callable[[Layer], None] = lambda layer: None,
        on_layer: Callable[[Layer, str], None] = lambda layer, status: None,
        streams: LiveIngests | None = None,
    ) -> UnpackResult:
        """Unpack ``layers`` (bottom first). ``blob_ready(layer)`` blocks until the layer's blob
        is in the content store (pulls fetch while earlier layers apply). With ``streams``, a
        layer still downloading is applied as it arrives, and ``blob_ready`` is asked after
        the apply, before the commit."""
        if not layers:
            raise InvalidArgument(f"image config {config.digest}: no layers to unpack")
        todo = self.pending(layers)
        skipped = [layer for layer in layers if layer not in todo]
        for layer in skipped:
            on_layer(layer, "exists")
        if todo:
            if self.snapshots.rebase and len(todo) > 1:
                self._parallel(todo, blob_ready, on_layer, streams)
            else:
                self._in_order(todo, blob_ready, on_layer, streams)
        top = layers[-1].chain_id
        self.content.set_labels(config.digest, {f"{GC_REF_SNAPSHOT}{self.snapshots.name}": top})
        return UnpackResult(top, todo, skipped)

    def _parallel(
        self,
        todo: Sequence[Layer],
        blob_ready: Callable[[Layer], None],
        on_layer: Callable[[Layer, str], None],
        streams: LiveIngests | None = None,
    ) -> None:
        # Prepare in layer order (so snapshot ids count up from the bottom layer, as a
        # sequential unpack numbers them) and apply on worker threads. Each layer is committed
        # onto its parent as soon as it and every layer below it are done, not after the
        # last one: a pull killed late keeps what it finished, and the next pull applies only
        # the layers above the highest committed one.
        from concurrent.futures import ThreadPoolExecutor

        prepared: list[tuple[Layer, str, list[Mount]]] = []
        committing = -1  # index in prepared of the layer being (or last) committed
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ctrstore-unpack")
        try:
            for layer in todo:
                p = self._prepare(layer, layer.parent if layer is todo[0] else "")
                if p is not None:
                    prepared.append((layer, *p))
            futures = [
                pool.submit(
                    self._apply,
                    layer,
                    mounts,
                    blob_ready,
                    on_layer,
                    parentless=layer is not todo[0],
                    streams=streams,
                )
                for layer, _, mounts in prepared
            ]
            for i, ((layer, key, _), f) in enumerate(zip(prepared, futures, strict=True)):
                f.result()
                committing = i
                self._commit(layer, key, parent=layer.parent)
                on_layer(layer, "unpacked")
        except BaseException:
            # Let the appliers still running finish (a snapshot being written into cannot be
            # removed; those following a download are told to stop), then drop every
            # snapshot not committed.
            if streams is not None:
                streams.cancel("the unpack of the image was given up")
            pool.shutdown(wait=True, cancel_futures=True)
            # The failed layers' files go first, all of them, so the records have room.
            failed = prepared[committing + 1 :]
            for _, key, mounts in failed:
                self._empty_failed(key, mounts)
            for _, key, _ in [*failed, *prepared[max(committing, 0) : committing + 1]]:
                self._discard_uncommitted(key)
            raise
        finally:
            pool.shutdown(wait=True)

    def _in_order(
        self,
        todo: Sequence[Layer],
        blob_ready: Callable[[Layer], None],
        on_layer: Callable[[Layer, str], None],
        streams: LiveIngests | None,
    ) -> None:
        """One layer after another, each onto the one below; the next layer's decoding starts
        while this one's files are created, once its blob is stored (``_Ahead``)."""
        ahead: _Ahead | None = None
        try:
            for i, layer in enumerate(todo):
                decoder = ahead.take() if ahead is not None else None
                ahead = _Ahead(self.content, todo[i + 1], blob_ready) if i + 1 < len(todo) else None
                try:
                    self._one(
                        layer, blob_ready, on_layer, parent=layer.parent, streams=streams, decoder=decoder
                    )
                finally:
                    if decoder is not None:
                        decoder.close()
        finally:
            if ahead is not None:
                ahead.close()

    def _prepare(self, layer: Layer, parent: str) -> tuple[str, list[Mount]] | None:
        """An active snapshot for ``layer``; None if another unpack made the layer meanwhile."""
        key = _key(layer.chain_id)
        try:
            return key, self.snapshots.prepare(key, parent, self._labels(layer))
        except AlreadyExists:
            if self._exists(layer.chain_id):
                return None
            raise

    def _apply(
        self,
        layer: Layer,
        mounts: Sequence[Mount],
        blob_ready: Callable[[Layer], None],
        on_layer: Callable[[Layer, str], None],
        *,
        parentless: bool,
        streams: LiveIngests | None = None,
        decoder: LayerDecoder | None = None,
    ) -> None:
        try:
            self._apply_once(
                layer, mounts, blob_ready, on_layer, parentless=parentless, streams=streams, decoder=decoder
            )
        except _StartedOver:
            # Overlay: the upper dir holds only this layer's files; emptied, it is a fresh
            # snapshot. Elsewhere (a copy of the parent) ``_one`` prepares a new one.
            upper = _writable_dir(mounts) if self.snapshots.rebase else None
            if upper is None:
                raise
            _empty_dir(upper)
            self._apply_once(layer, mounts, blob_ready, on_layer, parentless=parentless)

    def _apply_once(
        self,
        layer: Layer,
        mounts: Sequence[Mount],
        blob_ready: Callable[[Layer], None],
        on_layer: Callable[[Layer, str], None],
        *,
        parentless: bool,
        streams: LiveIngests | None = None,
        decoder: LayerDecoder | None = None,
    ) -> None:
        # (Imported here: a container's start or a pull with nothing new applies nothing.)
        from ctrstore.archive import apply_layer
        from ctrstore.diff import apply as apply_to_mounts

        # A blob still downloading is followed: applied from its ingest as it arrives. One
        # decoded ahead (``decoder``) is in the content store already.
        watch = streams.follow(layer.desc.digest) if streams is not None and decoder is None else None
        if watch is None and decoder is None:
            blob_ready(layer)
        on_layer(layer, "extracting")
        source = decoder or watch or self.content.path(layer.desc.digest)
        try:
            if parentless and mounts[0].type == "bind":
                # A parentless overlay snapshot: its bind source is the upper dir itself.
                stats = apply_layer(mounts[0].source, source, whiteouts="overlay")
            else:
                stats = apply_to_mounts(mounts, source, tmp_dir=self.tmp_dir)
        except BaseException:
            if watch is not None and streams is not None and not streams.cancelled:
                blob_ready(layer)  # a download that failed is the error to report
                if streams.started_over(layer.desc.digest, watch):
                    raise _StartedOver(layer) from None  # and it did not fail in the end
            raise
        if watch is not None and streams is not None:
            blob_ready(layer)  # the blob is verified and stored before its snapshot is committed
            if streams.started_over(layer.desc.digest, watch):
                raise _StartedOver(layer)
        self._verify(layer, stats)

    def _one(
        self,
        layer: Layer,
        blob_ready: Callable[[Layer], None],
        on_layer: Callable[[Layer, str], None],
        *,
        parent: str,
        streams: LiveIngests | None = None,
        decoder: LayerDecoder | None = None,
    ) -> None:
        p = self._prepare(layer, parent)
        if p is None:
            on_layer(layer, "exists")
            return
        key, mounts = p
        try:
            self._apply(
                layer, mounts, blob_ready, on_layer, parentless=False, streams=streams, decoder=decoder
            )
        except _StartedOver:
            self._discard_failed(key, mounts)
            self._one(layer, blob_ready, on_layer, parent=parent)  # from the stored blob
            return
        except BaseException:
            self._discard_failed(key, mounts)
            raise
        try:
            self._commit(layer, key, parent=None)
        except BaseException:
            self._discard_uncommitted(key)
            raise
        on_layer(layer, "unpacked")

    def _labels(self, layer: Layer) -> dict[str, str]:
        labels = {SNAPSHOT_REF: layer.chain_id, SNAPSHOT_DIFF_ID: layer.diff_id}
        if layer.parent:
            labels[SNAPSHOT_PARENT_CHAIN_ID] = layer.parent
        return labels

    def _verify(self, layer: Layer, stats: ApplyStats) -> None:
        if stats.diff_id != layer.diff_id:
            raise FailedPrecondition(
                f"layer {layer.desc.digest}: its uncompressed content is {stats.diff_id}, but the image "
                f"config says diff_ids[{layer.index}] = {layer.diff_id}"
            )

    def _commit(self, layer: Layer, key: str, *, parent: str | None) -> None:
        try:
            self.snapshots.commit(layer.chain_id, key, {SNAPSHOT_DIFF_ID: layer.diff_id}, parent=parent)
        except AlreadyExists:
            self._discard(key)
        self.content.set_labels(layer.desc.digest, {UNCOMPRESSED: layer.diff_id})

    def _discard(self, key: str) -> None:
        try:
            self.snapshots.remove(key)
        except NotFound:
            pass

    def _discard_failed(self, key: str, mounts: Sequence[Mount]) -> None:
        """Remove the active snapshot of a layer whose apply failed or never finished (and
        whose commit was never tried); see ``_empty_failed``."""
        self._empty_failed(key, mounts)
        self._discard_uncommitted(key)

    def _empty_failed(self, key: str, mounts: Sequence[Mount]) -> None:
        """Remove the files of a layer whose apply failed or never finished, before its
        snapshot: a full disk may be why it failed (a layer that decompresses to more than the
        disk holds), and removing a snapshot writes to meta.db and the snapshotter's
        metadata.db, which need room. Only an active snapshot (never tried to commit) is
        touched."""
        try:
            is_active = self.snapshots.stat(key).kind == Kind.ACTIVE
        except Exception:
            return
        upper = _writable_dir(mounts) if is_active else None
        if upper is not None:
            _empty_dir(upper)

    def _discard_uncommitted(self, key: str) -> None:
        """Remove ``key`` if it is still there, after a failure. Its files are not touched
        first (a commit that failed half-way may have made them a committed layer's), and
        nothing raised here may hide the error that brought us here: what cannot be removed
        is left to gc (the snapshot belongs to the pull's lease)."""
        with contextlib.suppress(Exception):
            self._discard(key)


class _StartedOver(Unavailable):
    """The download an apply followed started over (its bytes did not verify, and the fetcher
    fetched the blob again from a source it trusts more), and the blob is stored now: what
    was applied is thrown away and the layer applied again from the content store."""

    def __init__(self, layer: Layer) -> None:
        super().__init__(
            f"layer {layer.desc.digest}: its download started over while it was applied; pull again"
        )


class _Ahead:
    """The decoding of the next layer (on a layer-by-layer snapshotter), started on a thread
    of its own once its blob is in the content store: not while it downloads, as a layer
    still arriving is followed when its turn comes (reading it now would take the link from
    the layer being applied). ``take`` hands over the decoder if it has started, and makes
    the thread close one it starts later."""

    def __init__(self, content: Store, layer: Layer, blob_ready: Callable[[Layer], None]) -> None:
        self._lock = threading.Lock()
        self._decoder: LayerDecoder | None = None
        self._taken = False
        threading.Thread(
            target=self._run, args=(content, layer, blob_ready), name="ctrstore-ahead", daemon=True
        ).start()

    def _run(self, content: Store, layer: Layer, blob_ready: Callable[[Layer], None]) -> None:
        try:
            blob_ready(layer)
            decoder = LayerDecoder(content.path(layer.desc.digest))
        except BaseException:
            return  # the layer's own turn reports what went wrong
        with self._lock:
            if not self._taken:
                self._decoder = decoder
                return
        decoder.close()

    def take(self) -> LayerDecoder | None:
        with self._lock:
            self._taken = True
            decoder, self._decoder = self._decoder, None
        return decoder

    def close(self) -> None:
        decoder = self.take()
        if decoder is not None:
            decoder.close()


def _writable_dir(mounts: Sequence[Mount]) -> str | None:
    """The directory an active snapshot's changes are written to, if its mounts name one (an
    overlay's upper dir, or the directory behind a writable bind mount)."""
    from ctrstore.diff import overlay_upper

    direct = overlay_upper(mounts)
    if direct is not None:
        return direct[0]
    if len(mounts) == 1 and mounts[0].type == "bind" and "ro" not in mounts[0].options:
        return mounts[0].source
    return None


def _empty_dir(path: str) -> None:
    """Remove what ``path`` holds, best effort (the snapshot is removed right after)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
