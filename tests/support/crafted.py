"""Helpers for the hostile-input tests of images, archives and files (the registry side has
its own crafted server in ``hostile.py``): crafted images and archives, and the checks every
hostile case makes (nothing committed, nothing written outside the store; the one error line is
``tests.support.cli.one_line_error``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrstore import Client
from ctrstore.images import mediatypes as mt
from ctrstore.images.build import Entry, tar_from_entries
from ctrstore.images.platforms import host


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Crafted:
    """An image made of raw documents the test controls: ``blobs`` by digest, ``target``
    (index or manifest) as a descriptor dict."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    layers: list[bytes] = field(default_factory=list)

    def add(self, data: bytes) -> bytes:
        self.blobs[sha(data)] = data
        return data


def crafted_image(
    *,
    n_layers: int = 1,
    config: Mapping[str, Any] | None = None,
    config_bytes: bytes | None = None,
    manifest_patch: Mapping[str, Any] | None = None,
    manifest_bytes: bytes | None = None,
    layer_desc_patch: Mapping[str, Any] | None = None,
    index: bool = True,
    index_patch: Mapping[str, Any] | None = None,
) -> Crafted:
    """A small valid image (``n_layers`` one-file layers, an OCI manifest, optionally an index),
    with any document replaced or patched."""
    c = Crafted()
    layers = [
        c.add(tar_from_entries([Entry(f"f{i}", data=f"layer {i}\n".encode())])) for i in range(n_layers)
    ]
    c.layers = layers
    p = host()
    cfg: dict[str, Any] = {
        "architecture": p.architecture,
        "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
    }
    cfg.update(config or {})
    cbytes = c.add(config_bytes if config_bytes is not None else dumps(cfg))
    ldescs = [desc(x, mt.OCI_LAYER) for x in layers]
    if layer_desc_patch:
        ldescs[0].update(layer_desc_patch)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(cbytes, mt.OCI_CONFIG),
        "layers": ldescs,
    }
    manifest.update(manifest_patch or {})
    mbytes = c.add(manifest_bytes if manifest_bytes is not None else dumps(manifest))
    c.target = desc(mbytes, mt.OCI_MANIFEST)
    if index:
        idx: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                desc(mbytes, mt.OCI_MANIFEST, platform={"os": p.os, "architecture": p.architecture})
            ],
        }
        idx.update(index_patch or {})
        ibytes = c.add(dumps(idx))
        c.target = desc(ibytes, mt.OCI_INDEX)
    return c


def nested_indexes(depth: int) -> Crafted:
    """An image whose manifest sits ``depth`` indexes below the target."""
    c = crafted_image(index=False)
    target = c.target
    for _ in range(depth):
        data = c.add(dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [target]}))
        target = desc(data, mt.OCI_INDEX)
    c.target = target
    return c


# -- tar archives -----------------------------------------------------------------------------
def member(name: str, data: bytes = b"", **attrs: Any) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    for k, v in attrs.items():
        setattr(ti, k, v)
    if ti.type != tarfile.REGTYPE:
        ti.size = 0
    return ti, data


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isfile() else None)
    return buf.getvalue()


def oci_members(
    c: Crafted, names: Iterable[str | None] = ("example.com/app:1",), index_doc: Any = None
) -> list[tuple[tarfile.TarInfo, bytes]]:
    """An OCI layout holding ``c``: index.json lists the target once per name."""
    if index_doc is None:
        entries = []
        for n in names:
            entries.append({**c.target, "annotations": {"io.containerd.image.name": n}} if n else c.target)
        index_doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    out = [
        member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        member("index.json", index_doc if isinstance(index_doc, bytes) else dumps(index_doc)),
    ]
    out += [member(f"blobs/sha256/{d[7:]}", data) for d, data in sorted(c.blobs.items())]
    return out


def docker_members(c: Crafted, manifest_json: Any = None) -> list[tuple[tarfile.TarInfo, bytes]]:
    """A ``docker save`` archive (manifest.json, <id>.json, <n>/layer.tar) holding ``c``'s
    config and layers."""
    cfg = next(d for d, data in c.blobs.items() if b'"rootfs"' in data)
    if manifest_json is None:
        manifest_json = [
            {
                "Config": f"{cfg[7:]}.json",
                "RepoTags": ["example.com/app:1"],
                "Layers": [f"{i}/layer.tar" for i in range(len(c.layers))],
            }
        ]
    out = [
        member("manifest.json", manifest_json if isinstance(manifest_json, bytes) else dumps(manifest_json))
    ]
    out.append(member(f"{cfg[7:]}.json", c.blobs[cfg]))
    out += [member(f"{i}/layer.tar", data) for i, data in enumerate(c.layers)]
    return out


# -- the checks ------------------------------------------------------------------------------
def nothing_committed(client: Client) -> None:
    """No image record and no snapshot (in any snapshotter that works here)."""
    assert client.images.list() == []
    for name in ("overlayfs", "native"):
        try:
            sn = client.snapshotter(name)
        except Exception:
            continue
        assert list(sn.walk()) == [], name


def files_outside(top: Path, store: Path) -> set[str]:
    """Every path under ``top`` except inside ``store`` (what a hostile input must not touch)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == store:
            dirnames.clear()
            continue
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), top))
    return out
