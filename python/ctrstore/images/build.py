"""Build OCI images with ctrstore's own code: layer tars from directories or entry lists,
compressed with gzip or zstd, a config, a manifest and an index, stored in the content store
with the gc labels a pulled image would have, and named by an image record.

Used by the tests and the demo to make images locally (nothing is pulled from the internet),
and by ``commit`` to store the new image's config and manifest (its layer is written by the Rust
diff writer). Whiteout entries are named by the Rust core (``ctrstore.archive.whiteout_path``),
the one owner of that encoding.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import zstandard

from ctrstore._core import sha256_bytes
from ctrstore.archive import whiteout_path
from ctrstore.content import Descriptor, Store
from ctrstore.errdefs import InvalidArgument
from ctrstore.images import gc_child_labels
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform, host
from ctrstore.labels import UNCOMPRESSED
from ctrstore.metadata.images import Image, ImageStore

__all__ = [
    "Entry",
    "ImageSpec",
    "build_image",
    "canonical_json",
    "compress",
    "store_blob",
    "tar_from_dir",
    "tar_from_entries",
]

Compression = Literal["gzip", "zstd", "none"]
EPOCH = 0


@dataclass(frozen=True)
class Entry:
    """One tar entry. ``kind``: file, dir, symlink, hardlink, char, block, fifo; ``whiteout``
    (deletes ``path`` from lower layers) and ``opaque`` (hides a directory's lower contents)."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    link: str = ""
    major: int = 0
    minor: int = 0
    xattrs: Mapping[str, str] = field(default_factory=dict)
    mtime: int = 1_700_000_000


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_MODES = {
    "file": 0o644,
    "dir": 0o755,
    "symlink": 0o777,
    "hardlink": 0o644,
    "char": 0o666,
    "block": 0o660,
    "fifo": 0o644,
}


def tar_from_entries(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            path = e.path.strip("/")
            data = e.data
            if e.kind in ("whiteout", "opaque"):
                # The encoding is the Rust core's (the one the applier and diff writer use).
                path = whiteout_path(path, opaque=e.kind == "opaque")
                kind, data = "file", b""
            else:
                kind = e.kind
            if kind not in _TYPES:
                raise InvalidArgument(f"tar entry {e.path!r}: unknown kind {e.kind!r}")
            ti = tarfile.TarInfo(path)
            ti.type = _TYPES[kind]
            ti.mode = e.mode if e.mode is not None else _MODES[kind]
            ti.uid, ti.gid, ti.mtime = e.uid, e.gid, e.mtime
            ti.uname = ti.gname = ""
            ti.linkname = e.link
            ti.devmajor, ti.devminor = e.major, e.minor
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def tar_from_dir(root: str | os.PathLike[str]) -> bytes:
    """A layer holding everything under ``root`` (numeric owners, paths relative to root)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arc = os.path.relpath(full, root)
                ti = tf.gettarinfo(full, arcname=arc)
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(full, "rb") as f:
                        tf.addfile(ti, f)
                else:
                    tf.addfile(ti)
    return buf.getvalue()


def compress(tar: bytes, compression: Compression, *, oci: bool = True) -> tuple[bytes, str]:
    """``(blob, media type)`` of a layer tar."""
    if compression == "gzip":
        return gzip.compress(
            tar, compresslevel=6, mtime=EPOCH
        ), mt.OCI_LAYER_GZIP if oci else mt.DOCKER_LAYER_GZIP
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(
            tar
        ), mt.OCI_LAYER_ZSTD if oci else mt.DOCKER_LAYER_ZSTD
    if compression == "none":
        return tar, mt.OCI_LAYER if oci else mt.DOCKER_LAYER
    raise InvalidArgument(f"unknown compression {compression!r} (gzip, zstd or none)")


@dataclass
class ImageSpec:
    """What goes into the image config besides the layers."""

    cmd: Sequence[str] = ("/bin/sh",)
    entrypoint: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    volumes: Sequence[str] = ()
    """Paths that get an anonymous volume in each container (the config's ``Volumes``)."""
    platform: Platform = field(default_factory=host)
    stop_signal: str = ""
    """The config's StopSignal (the signal ``stop`` sends first)."""
    exposed_ports: Sequence[str] = ()
    """The config's ``ExposedPorts`` (Dockerfile's EXPOSE): ``"80/tcp"``, ``"53/udp"``; what
    ``run -P`` publishes."""


def store_blob(
    content: Store, data: bytes, media_type: str, labels: Mapping[str, str] | None = None
) -> Descriptor:
    """Store ``data`` (verified, under containerd's ref for its type) and label it; a blob the
    namespace already holds only gets the labels. Returns its descriptor."""
    d = sha256_bytes(data)
    content.ingest(f"{mt.ref_prefix(media_type)}-{d}", data, expected=d, size=len(data), labels=labels)
    return Descriptor(media_type, d, len(data))


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON with sorted keys, so the same document always has the same digest."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def build_image(
    content: Store,
    images: ImageStore | None,
    name: str,
    layers: Sequence[bytes],
    spec: ImageSpec | None = None,
    *,
    compression: Compression = "gzip",
    oci: bool = True,
    index: bool = True,
) -> Image:
    """Store an image made of the layer tars ``layers`` (bottom first) and name it ``name``.

    With ``index`` the image's target is an index with one manifest for ``spec.platform``,
    as registries serve multi-platform images; else the manifest itself."""
    spec = spec or ImageSpec()
    layer_descs = []
    diff_ids = []
    for tar in layers:
        blob, media_type = compress(tar, compression, oci=oci)
        diff_id = sha256_bytes(tar)
        diff_ids.append(diff_id)
        layer_descs.append(store_blob(content, blob, media_type, {UNCOMPRESSED: diff_id}))
    volumes: dict[str, Any] = {p: {} for p in spec.volumes}
    exposed: dict[str, Any] = {p: {} for p in spec.exposed_ports}
    cfg: dict[str, Any] = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": spec.platform.architecture,
        "os": spec.platform.os,
        "config": {
            k: v
            for k, v in {
                "Cmd": list(spec.cmd),
                "Entrypoint": list(spec.entrypoint) or None,
                "Env": list(spec.env),
                "WorkingDir": spec.working_dir,
                "User": spec.user,
                "Labels": dict(spec.labels) or None,
                "Volumes": volumes or None,
                "StopSignal": spec.stop_signal,
                "ExposedPorts": exposed or None,
            }.items()
            if v
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "ctrstore build", "created": "2023-11-14T22:13:20Z"} for _ in layers],
    }
    if spec.platform.variant:
        cfg["variant"] = spec.platform.variant
    config = store_blob(content, canonical_json(cfg), mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG)
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST,
        "config": config.to_json(),
        "layers": [d.to_json() for d in layer_descs],
    }
    m_type = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
    manifest = store_blob(
        content,
        canonical_json(manifest_doc),
        m_type,
        gc_child_labels(Descriptor(m_type, "", 0), [config, *layer_descs]),
    )
    target = manifest
    if index:
        plat = {"os": spec.platform.os, "architecture": spec.platform.architecture}
        if spec.platform.variant:
            plat["variant"] = spec.platform.variant
        m_entry = Descriptor(manifest.media_type, manifest.digest, manifest.size, platform=plat)
        i_type = mt.OCI_INDEX if oci else mt.DOCKER_MANIFEST_LIST
        index_doc = {"schemaVersion": 2, "mediaType": i_type, "manifests": [m_entry.to_json()]}
        target = store_blob(
            content, canonical_json(index_doc), i_type, gc_child_labels(Descriptor(i_type, "", 0), [m_entry])
        )
    image = Image(name, target)
    if images is None:
        return image
    return images.upsert(image)
