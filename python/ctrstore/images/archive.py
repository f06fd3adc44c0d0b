"""Image archives: OCI image layout tars and ``docker save`` tars, in and out.

Export writes an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) with
one index entry per image, named by the ``org.opencontainers.image.ref.name`` and
``io.containerd.image.name`` annotations, plus a ``manifest.json`` so that ``docker load``
takes the same archive, as ``ctr images export`` does.

Import reads either an OCI layout (names from those annotations) or a ``docker save`` archive
(``manifest.json`` with ``Config``, ``Layers`` and ``RepoTags``; a Docker schema 2 manifest is
made for it), stores every blob verified, and creates or updates the image records.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from typing import IO, Any

from ctrstore.content import Descriptor
from ctrstore.errdefs import AlreadyExists, InvalidArgument, NotFound
from ctrstore.images import children, gc_child_labels
from ctrstore.images import mediatypes as mt
from ctrstore.metadata.content import ContentStore
from ctrstore.metadata.images import Image, ImageStore

__all__ = ["export_images", "import_images"]

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def _walk(content: ContentStore, desc: Descriptor, image: str) -> list[Descriptor]:
    """``desc`` and everything below it that the archive must carry. Manifests of platforms
    never pulled are left out (an index lists them all); a missing config or layer is an
    error, so an incomplete image is never written as if it were whole."""
    out = [desc]
    for child in children(content, desc):
        if not content.exists(child.digest):
            if mt.is_manifest(child.media_type) or mt.is_index(child.media_type):
                continue
            raise NotFound(
                f"cannot export {image}: {mt.ref_prefix(child.media_type)}-{child.digest} is not in the "
                f"content store of namespace {content.namespace!r} (pull the image again to fetch it)"
            )
        out += _walk(content, child, image)
    return out


def export_images(content: ContentStore, images: Sequence[Image], out: IO[bytes]) -> int:
    """Write an OCI layout tar of ``images`` to ``out``; returns the number of blobs.

    Every blob is looked up before the first byte is written: NotFound (naming the blob) if
    an image is incomplete."""
    blobs: dict[str, Descriptor] = {}
    manifests = []
    for img in images:
        if not content.exists(img.target.digest):
            raise NotFound(
                f"cannot export {img.name}: {mt.ref_prefix(img.target.media_type)}-{img.target.digest} "
                f"is not in the content store of namespace {content.namespace!r}"
            )
        for d in _walk(content, img.target, img.name):
            blobs.setdefault(d.digest, d)
        ann = {**img.target.annotations, CONTAINERD_NAME: img.name}
        tag = img.name.rsplit(":", 1)[1] if ":" in img.name.rsplit("/", 1)[-1] else ""
        if tag:
            ann[REF_NAME] = tag
        manifests.append(Descriptor(img.target.media_type, img.target.digest, img.target.size, ann).to_json())
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add(name: str, data: bytes | None = None, path: str | None = None) -> None:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime = 0o444, 0
            if path is not None:
                ti.size = os.path.getsize(path)
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            else:
                assert data is not None
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
        add("index.json", json.dumps(index).encode())
        add("manifest.json", json.dumps(_docker_manifest(content, images)).encode())
        for digest in sorted(blobs):
            add(f"blobs/sha256/{digest.split(':', 1)[1]}", path=content.path(digest))
    return len(blobs)


def _docker_manifest(content: ContentStore, images: Sequence[Image]) -> list[dict[str, Any]]:
    """``docker save``'s manifest.json for the host platform's manifest of each image."""
    from ctrstore.images import manifest_for

    out = []
    for img in images:
        try:
            _, manifest = manifest_for(content, img.target)
        except NotFound:
            continue
        path = "blobs/sha256/{}".format
        out.append(
            {
                "Config": path(manifest["config"]["digest"].split(":", 1)[1]),
                "RepoTags": [img.name],
                "Layers": [path(layer["digest"].split(":", 1)[1]) for layer in manifest.get("layers") or []],
            }
        )
    return out


def _members(tf: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {m.name.lstrip("./"): m for m in tf.getmembers() if m.isfile()}


def _read(tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    m = members.get(name)
    f = tf.extractfile(m) if m else None
    if f is None:
        raise InvalidArgument(f"archive has no {name}")
    return f.read()


def import_images(content: ContentStore, images: ImageStore, path: str | os.PathLike[str]) -> list[Image]:
    """Import an OCI layout tar or a ``docker save`` tar; returns the images created."""
    with tarfile.open(path, mode="r:*") as tf:
        members = _members(tf)
        if "index.json" in members:
            return _import_oci(content, images, tf, members)
        if "manifest.json" in members:
            return _import_docker(content, images, tf, members)
    raise InvalidArgument(f"{path}: neither an OCI image layout (index.json) nor a docker save archive")


def _ingest_member(
    content: ContentStore,
    tf: tarfile.TarFile,
    m: tarfile.TarInfo,
    desc: Descriptor,
    labels: dict[str, str] | None = None,
) -> None:
    f = tf.extractfile(m)
    assert f is not None
    try:
        content.ingest(f"import-{desc.digest}", f, expected=desc.digest, size=desc.size, labels=labels)
    except AlreadyExists:
        pass
    if labels:
        content.set_labels(desc.digest, labels)


def _import_oci(
    content: ContentStore, images: ImageStore, tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> list[Image]:
    index = json.loads(_read(tf, members, "index.json"))

    def blob(desc: Descriptor) -> tarfile.TarInfo:
        name = f"blobs/sha256/{desc.digest.split(':', 1)[1]}"
        if name not in members:
            raise InvalidArgument(f"archive lacks blob {desc.digest} ({mt.ref_prefix(desc.media_type)})")
        return members[name]

    def store(desc: Descriptor) -> None:
        from ctrstore.images import parse_children

        mt.check_supported(desc.media_type, f"{mt.ref_prefix(desc.media_type)} {desc.digest}")
        if mt.is_index(desc.media_type) or mt.is_manifest(desc.media_type):
            f = tf.extractfile(blob(desc))
            assert f is not None
            kids = parse_children(desc, json.loads(f.read()))
            # An index may list manifests for platforms the archive does not carry; a
            # manifest's config and layers must all be there.
            present = [
                k
                for k in kids
                if f"blobs/sha256/{k.digest[7:]}" in members or not mt.is_index(desc.media_type)
            ]
            for k in present:
                store(k)
            _ingest_member(content, tf, blob(desc), desc, gc_child_labels(desc, present) or None)
        else:
            _ingest_member(content, tf, blob(desc), desc)

    created = []
    for entry in index.get("manifests") or []:
        desc = Descriptor.from_json(entry)
        store(desc)
        ann = desc.annotations
        name = ann.get(CONTAINERD_NAME) or ann.get(REF_NAME)
        if not name:
            continue
        created.append(_upsert(images, Image(name, Descriptor(desc.media_type, desc.digest, desc.size))))
    return created


def _import_docker(
    content: ContentStore, images: ImageStore, tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> list[Image]:
    import hashlib

    entries: list[dict[str, Any]] = json.loads(_read(tf, members, "manifest.json"))
    created = []
    for entry in entries:
        config_bytes = _read(tf, members, entry["Config"])
        config = Descriptor(
            mt.DOCKER_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes)
        )
        try:
            content.ingest(f"import-{config.digest}", config_bytes, expected=config.digest)
        except AlreadyExists:
            pass
        layers = []
        for name in entry["Layers"]:
            m = members[name.lstrip("./")]
            f = tf.extractfile(m)
            assert f is not None
            h = hashlib.sha256()
            while chunk := f.read(1 << 20):
                h.update(chunk)
            desc = Descriptor(mt.DOCKER_LAYER, "sha256:" + h.hexdigest(), m.size)
            _ingest_member(content, tf, m, desc, {"containerd.io/uncompressed": desc.digest})
            layers.append(desc)
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        data = json.dumps(manifest_doc, separators=(",", ":")).encode()
        mdesc = Descriptor(mt.DOCKER_MANIFEST, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
        try:
            content.ingest(
                f"import-{mdesc.digest}",
                data,
                expected=mdesc.digest,
                labels=gc_child_labels(mdesc, [config, *layers]),
            )
        except AlreadyExists:
            pass
        for tag in entry.get("RepoTags") or []:
            created.append(_upsert(images, Image(_normalize(tag), mdesc)))
    return created


def _normalize(name: str) -> str:
    try:
        from ctrstore.remotes.reference import parse

        return str(parse(name))
    except ImportError:  # pragma: no cover - remotes is part of the package
        return name


def _upsert(images: ImageStore, image: Image) -> Image:
    try:
        return images.create(image)
    except AlreadyExists:
        return images.update(image, ["target"])
