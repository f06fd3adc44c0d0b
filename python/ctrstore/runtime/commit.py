"""``commit``: a container's changes become a new layer, and a new image on top of its own.

The layer is written by the Rust core's diff writer (``ctrstore.archive.write_diff``, as
containerd's walking differ): on overlay the container snapshot's upper dir *is* the change set
(its 0:0 character devices become ``.wh.<name>`` entries, its opaque directories
``.wh..wh..opq``); on other snapshotters the container's tree is compared with its parent's
through temporary mounts. Either way the layer streams — compressed and hashed (digest and
diffID) in one pass, without the GIL — straight into a content-store ingest, whatever its size.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ctrstore.archive import DiffStats
from ctrstore.content import Descriptor
from ctrstore.diff import overlay_upper
from ctrstore.errdefs import AlreadyExists, CtrstoreError
from ctrstore.images import gc_child_labels, read_config, resolve
from ctrstore.images import mediatypes as mt
from ctrstore.images.build import canonical_json, store_blob
from ctrstore.labels import UNCOMPRESSED
from ctrstore.metadata.images import Image
from ctrstore.mount import temp_mount

if TYPE_CHECKING:
    from ctrstore.content import Store
    from ctrstore.metadata.containers import Container
    from ctrstore.metadata.images import ImageStore
    from ctrstore.snapshots import NamedSnapshotter

__all__ = ["commit"]

_LAYER_TYPES = {
    ("gzip", True): mt.OCI_LAYER_GZIP,
    ("gzip", False): mt.DOCKER_LAYER_GZIP,
    ("zstd", True): mt.OCI_LAYER_ZSTD,
    ("zstd", False): mt.DOCKER_LAYER_ZSTD,
}


def commit(
    c: Container,
    name: str,
    *,
    snapshotter: NamedSnapshotter,
    content: Store,
    images: ImageStore,
    tmp_dir: Path,
    compression: Literal["gzip", "zstd"] = "gzip",
) -> Image:
    """Image ``name``: container ``c``'s image plus one layer with the changes in its
    snapshot (read from ``snapshotter``; other snapshotters than overlay compare trees
    through temporary mounts under ``tmp_dir``), written to ``content`` and named in
    ``images``."""
    base = resolve(content, images.get(c.image).target)
    mdesc, config_desc = base.manifest, base.config
    config = read_config(content, config_desc)
    oci = mdesc.media_type == mt.OCI_MANIFEST
    stats = _write_layer(c, snapshotter, content, tmp_dir, compression)
    layer = Descriptor(_LAYER_TYPES[(compression, oci)], stats.digest, stats.size)
    config["rootfs"]["diff_ids"].append(stats.diff_id)
    config.setdefault("history", []).append({"created_by": f"ctrstore commit {c.id}"})
    new_config = store_blob(content, canonical_json(config), config_desc.media_type)
    layers = [*base.layers, layer]
    manifest = {**base.doc, "config": new_config.to_json(), "layers": [d.to_json() for d in layers]}
    new_manifest = store_blob(
        content, canonical_json(manifest), mdesc.media_type, gc_child_labels(mdesc, [new_config, *layers])
    )
    return images.upsert(Image(name, new_manifest))


def _write_layer(
    c: Container,
    sn: NamedSnapshotter,
    content: Store,
    tmp_dir: Path,
    compression: Literal["gzip", "zstd"],
) -> DiffStats:
    """Write the layer of ``c``'s changes into ``content`` (labelled with its diffID), as
    containerd's walking differ does: under a new ingest ref, aborted if anything fails."""
    mounts = sn.mounts(c.snapshot_key)
    direct = overlay_upper(mounts)
    ref = f"commit-{c.id}-{uuid.uuid4().hex}"
    try:
        with content.writer(ref) as w:
            if direct is not None:
                stats = w.write_diff(direct[0], compression=compression)
            else:
                info = sn.stat(c.snapshot_key)
                tmp_dir.mkdir(parents=True, exist_ok=True)
                view = f"commit-{c.id}-{os.getpid()}"
                try:
                    parent = sn.view(view, info.parent)
                    with temp_mount(parent, tmp_dir) as lower, temp_mount(mounts, tmp_dir) as upper:
                        stats = w.write_diff(upper, lower=lower, compression=compression)
                finally:
                    sn.remove(view)
            labels = {UNCOMPRESSED: stats.diff_id}
            try:
                w.commit(stats.size, stats.digest, labels)
            except AlreadyExists:
                content.set_labels(stats.digest, labels)  # the namespace had this layer already
    except BaseException:
        try:
            content.abort(ref)
        except CtrstoreError:
            pass  # (gone already, or not removable now: gc takes it; the first error is the one)
        raise
    return stats
