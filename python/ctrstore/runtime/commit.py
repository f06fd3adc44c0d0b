"""``commit``: a container's changes become a new layer, and a new image on top of its own.

On overlay the container snapshot's upper dir *is* the change set: overlay whiteouts (0:0
character devices) become ``.wh.<name>`` entries and opaque directories (the
``trusted.overlay.opaque`` xattr) ``.wh..wh..opq``, as containerd's diff writer does. On other
snapshotters the container's tree is compared with its parent's, entry by entry.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ctrstore._core import sha256_bytes
from ctrstore.images import gc_child_labels, read_config, resolve
from ctrstore.images import mediatypes as mt
from ctrstore.images.build import canonical_json, compress, store_blob
from ctrstore.labels import UNCOMPRESSED
from ctrstore.metadata.images import Image
from ctrstore.mount import temp_mount

if TYPE_CHECKING:
    from ctrstore.content import Store
    from ctrstore.metadata.containers import Container
    from ctrstore.metadata.images import ImageStore
    from ctrstore.snapshots import NamedSnapshotter

__all__ = ["commit", "diff_overlay_upper", "diff_trees"]

_KEEP_XATTRS = ("user.", "security.capability")
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")


def _tarinfo(tf: tarfile.TarFile, path: str, arc: str) -> tarfile.TarInfo:
    ti = tf.gettarinfo(path, arcname=arc)
    ti.uname = ti.gname = ""
    ti.mtime = int(ti.mtime)
    xattrs = {}
    try:
        for name in os.listxattr(path, follow_symlinks=False):
            if name.startswith(_KEEP_XATTRS):
                xattrs[f"SCHILY.xattr.{name}"] = os.getxattr(path, name, follow_symlinks=False).decode(
                    "utf-8", "surrogateescape"
                )
    except OSError:
        pass
    ti.pax_headers = xattrs
    return ti


def _add(tf: tarfile.TarFile, path: str, arc: str) -> None:
    ti = _tarinfo(tf, path, arc)
    if ti.isreg():
        with open(path, "rb") as f:
            tf.addfile(ti, f)
    else:
        tf.addfile(ti)


def _whiteout(tf: tarfile.TarFile, arc: str) -> None:
    ti = tarfile.TarInfo(arc)
    ti.mtime = 0
    tf.addfile(ti, io.BytesIO(b""))


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def diff_overlay_upper(upper: Path) -> bytes:
    """The layer tar of an overlay upper dir (PAX, names relative, parents first)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(upper):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, upper)
            if rel_dir != "." and _is_opaque(dirpath):
                _whiteout(tf, f"{rel_dir}/.wh..wh..opq")
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arc = name if rel_dir == "." else f"{rel_dir}/{name}"
                st = os.lstat(full)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    head, _, base = arc.rpartition("/")
                    _whiteout(tf, f"{head}/.wh.{base}" if head else f".wh.{base}")
                elif stat.S_ISSOCK(st.st_mode):
                    continue
                else:
                    _add(tf, full, arc)
    return buf.getvalue()


def _entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            arc = name if rel == "." else f"{rel}/{name}"
            yield arc, os.lstat(os.path.join(dirpath, name))


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True
    return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def diff_trees(lower: Path, upper: Path) -> bytes:
    """The layer tar that turns tree ``lower`` into tree ``upper`` (deletions as whiteouts)."""
    old = dict(_entries(lower))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        new_paths = set()
        for arc, st in _entries(upper):
            new_paths.add(arc)
            prev = old.get(arc)
            if prev is not None and _same(prev, st):
                if stat.S_ISLNK(st.st_mode) and os.readlink(lower / arc) != os.readlink(upper / arc):
                    _add(tf, str(upper / arc), arc)
                continue
            _add(tf, str(upper / arc), arc)
        gone = sorted(set(old) - new_paths)
        for arc in gone:
            if any(arc.startswith(g + "/") for g in gone if g != arc):
                continue  # inside a deleted directory: the directory's whiteout covers it
            head, _, base = arc.rpartition("/")
            _whiteout(tf, f"{head}/.wh.{base}" if head else f".wh.{base}")
    return buf.getvalue()


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
    sn = snapshotter
    mounts = sn.mounts(c.snapshot_key)
    from ctrstore.diff import overlay_upper

    direct = overlay_upper(mounts)
    if direct is not None:
        tar = diff_overlay_upper(Path(direct[0]))
    else:
        info = sn.stat(c.snapshot_key)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        view = f"commit-{c.id}-{os.getpid()}"
        try:
            parent = sn.view(view, info.parent)
            with temp_mount(parent, tmp_dir) as lower, temp_mount(mounts, tmp_dir) as upper:
                tar = diff_trees(lower, upper)
        finally:
            sn.remove(view)
    base = resolve(content, images.get(c.image).target)
    mdesc, config_desc = base.manifest, base.config
    config = read_config(content, config_desc)
    diff_id = sha256_bytes(tar)
    oci = mdesc.media_type == mt.OCI_MANIFEST
    blob, layer_type = compress(tar, compression, oci=oci)
    layer = store_blob(content, blob, layer_type, {UNCOMPRESSED: diff_id})
    config["rootfs"]["diff_ids"].append(diff_id)
    config.setdefault("history", []).append({"created_by": f"ctrstore commit {c.id}"})
    new_config = store_blob(content, canonical_json(config), config_desc.media_type)
    layers = [*base.layers, layer]
    manifest = {**base.doc, "config": new_config.to_json(), "layers": [d.to_json() for d in layers]}
    new_manifest = store_blob(
        content, canonical_json(manifest), mdesc.media_type, gc_child_labels(mdesc, [new_config, *layers])
    )
    return images.upsert(Image(name, new_manifest))
