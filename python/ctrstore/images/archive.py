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
import lzma
import os
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn, TypeVar, cast

from ctrstore._core import Digester, sha256_bytes
from ctrstore.config import DEFAULT_MAX_LAYERS
from ctrstore.content import Descriptor, Provider, Store
from ctrstore.errdefs import FailedPrecondition, InvalidArgument, NotFound, from_oserror
from ctrstore.images import (
    MAX_DOCUMENT_SIZE,
    MAX_INDEX_DEPTH,
    check_document_size,
    check_layer_count,
    children,
    gc_child_labels,
    parse_children,
    parse_index,
    parse_object,
    resolve,
    validate_config,
)
from ctrstore.images import mediatypes as mt
from ctrstore.jsondoc import describe_type, loads, want_str, want_str_list
from ctrstore.labels import UNCOMPRESSED
from ctrstore.metadata.images import Image, ImageStore, validate_name

_T = TypeVar("_T")

__all__ = ["export_images", "import_images"]

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def _walk(content: Provider, desc: Descriptor, image: str, depth: int = 0) -> list[Descriptor]:
    """``desc`` and everything below it that the archive must carry. Manifests of platforms
    never pulled are left out (an index lists them all); a missing config or layer is an
    error, so an incomplete image is never written as if it were whole."""
    if depth > MAX_INDEX_DEPTH + 1:
        raise InvalidArgument(f"{desc.digest}: indexes nested more than {MAX_INDEX_DEPTH} levels deep")
    out = [desc]
    for child in children(content, desc):
        if not content.exists(child.digest):
            if mt.is_manifest(child.media_type) or mt.is_index(child.media_type):
                continue
            raise NotFound(
                f"cannot export {image}: {mt.ref_prefix(child.media_type)}-{child.digest} is not in the "
                f"content store of namespace {content.namespace!r} (pull the image again to fetch it)"
            )
        out += _walk(content, child, image, depth + 1)
    return out


def export_images(content: Provider, images: Sequence[Image], out: IO[bytes]) -> int:
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


def _docker_manifest(content: Provider, images: Sequence[Image]) -> list[dict[str, Any]]:
    """``docker save``'s manifest.json for the host platform's manifest of each image."""
    out = []
    for img in images:
        try:
            r = resolve(content, img.target)
        except NotFound:
            continue
        path = "blobs/sha256/{}".format
        out.append(
            {
                "Config": path(r.config.digest.split(":", 1)[1]),
                "RepoTags": [img.name],
                "Layers": [path(layer.digest.split(":", 1)[1]) for layer in r.layers],
            }
        )
    return out


MAX_MEMBERS = 100_000
"""The most entries an archive may have (an OCI layout holds one per blob, plus three)."""

MAX_LINK_HOPS = 8
"""How many links in a row are followed to find a member's data (docker save's legacy layout
links ``<id>/layer.tar`` files to one another)."""

_TAR_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,  # gzip.BadGzipFile, bz2's "Invalid data stream", a read error
)


class _Member(io.RawIOBase):
    """A member's data as a stream whose read errors (a truncated or corrupt archive) are
    InvalidArgument naming the archive and the member."""

    def __init__(self, archive: _Archive, m: tarfile.TarInfo) -> None:
        f = archive.guard(lambda: archive.tf.extractfile(m), m.name)
        assert f is not None
        self._f = f
        self._archive = archive
        self._name = m.name

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._archive.guard(lambda: self._f.read(-1 if size is None else size), self._name)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._archive.guard(lambda: self._f.seek(offset, whence), self._name)


class _Archive:
    """An image archive opened for reading: its members by clean name (``./x`` is ``x``),
    links followed inside the archive only. Hostile or broken archives are InvalidArgument:
    absolute or ``..`` member names, duplicate names, devices and fifos, links pointing
    outside the archive or in a loop, too many members, truncated or corrupt data."""

    def __init__(self, tf: tarfile.TarFile, path: str, file_size: int | None = None) -> None:
        """``file_size``: the archive's size when it is an uncompressed tar, so that a member
        claiming more data than the file holds is caught up front."""
        self.tf = tf
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        count = 0
        it = iter(tf)
        while True:
            m = self.guard(lambda: next(it, None), None)
            if m is None:
                break
            count += 1
            if count > MAX_MEMBERS:
                self.fail(f"more than {MAX_MEMBERS} members")
            name = self._clean(m.name)
            if m.isdir():
                continue
            if not (m.isfile() or m.issym() or m.islnk()):
                self.fail(f"member {m.name!r} is a device or fifo: an image archive holds files and links")
            if name in self.members:
                self.fail(f"member {name!r} appears more than once")
            if file_size is not None and m.isfile() and m.offset_data + m.size > file_size:
                self.fail(f"member {m.name!r}: truncated ({m.size} bytes claimed, the file ends before)")
            self.members[name] = m

    def fail(self, message: str) -> NoReturn:
        raise InvalidArgument(f"archive {self.path}: {message}")

    def guard(self, op: Callable[[], _T], member: str | None) -> _T:
        try:
            return op()
        except _TAR_ERRORS as e:
            where = f"member {member!r}: " if member else ""
            detail = str(e) or type(e).__name__
            self.fail(f"{where}truncated or corrupt ({detail})")

    def _clean(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            self.fail(f"member name {name!r} is absolute or has '..' in it")
        return posixpath.normpath(name)

    def has(self, name: str) -> bool:
        return posixpath.normpath(name) in self.members

    def regular(self, name: str) -> tarfile.TarInfo:
        """The regular file member ``name`` stands for (following links inside the archive)."""
        cur = posixpath.normpath(name)
        for _ in range(MAX_LINK_HOPS + 1):
            m = self.members.get(cur)
            if m is None:
                via = "" if cur == posixpath.normpath(name) else f" (the target of {name!r})"
                self.fail(f"has no member {cur!r}{via}")
            if m.isfile():
                return m
            target = m.linkname
            if m.issym() and not target.startswith("/"):
                target = posixpath.join(posixpath.dirname(cur), target)
            clean = posixpath.normpath(target)
            if target.startswith("/") or clean == ".." or clean.startswith("../"):
                self.fail(f"member {cur!r} links to {m.linkname!r}, outside the archive")
            cur = clean
        raise InvalidArgument(
            f"archive {self.path}: member {name!r}: more than {MAX_LINK_HOPS} links in a row (a loop?)"
        )

    def open(self, name: str) -> IO[bytes]:
        return cast(IO[bytes], _Member(self, self.regular(name)))

    def read_json(self, name: str) -> Any:
        """A JSON member (at most MAX_DOCUMENT_SIZE bytes), strictly parsed."""
        m = self.regular(name)
        what = f"archive {self.path}: {name}"
        if m.size > MAX_DOCUMENT_SIZE:
            raise InvalidArgument(f"{what}: {m.size} bytes is more than a JSON document may have")
        return loads(_Member(self, m).read(), what)


def _reference_name(name: str, what: str) -> str:
    try:
        return validate_name(name)
    except InvalidArgument as e:
        raise InvalidArgument(f"{what}: {e}") from None


def import_images(
    content: Store,
    images: ImageStore,
    path: str | os.PathLike[str],
    *,
    max_layers: int = DEFAULT_MAX_LAYERS,
) -> list[Image]:
    """Import an OCI layout tar or a ``docker save`` tar; returns the images created.

    Everything is checked before an image record is written: the archive's structure, every
    JSON document's fields, every name (it must be a valid reference), every blob's digest and
    each image's layer count (at most ``max_layers``). If anything is wrong, no image is
    created or changed (blobs already stored are left to gc)."""
    shown = os.fspath(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise from_oserror(e, f"archive {shown}") from None
    with raw:
        try:
            tf = tarfile.open(fileobj=raw, mode="r:*")  # noqa: SIM115 - closed by the with below
        except _TAR_ERRORS as e:
            detail = " ".join(str(e).split())  # tarfile lists each method it tried on its own line
            raise InvalidArgument(
                f"archive {shown}: not a tar archive (plain, gzip, bzip2 or xz), or truncated: {detail}"
            ) from None
        with tf:
            plain = tf.fileobj is raw  # an uncompressed tar: its size bounds every member
            archive = _Archive(tf, shown, os.fstat(raw.fileno()).st_size if plain else None)
            if archive.has("index.json"):
                todo = _import_oci(content, archive, max_layers)
            elif archive.has("manifest.json"):
                todo = _import_docker(content, archive, max_layers)
            else:
                raise InvalidArgument(
                    f"archive {shown}: neither an OCI image layout (index.json) nor a docker save archive "
                    "(manifest.json)"
                )
    return [images.upsert(image) for image in todo]


def _ingest(
    content: Store,
    archive: _Archive,
    source: IO[bytes] | bytes,
    desc: Descriptor,
    labels: dict[str, str] | None = None,
) -> None:
    ref = f"import-{desc.digest}"
    try:
        content.ingest(ref, source, expected=desc.digest, size=desc.size, labels=labels)
    except FailedPrecondition as e:
        # Wrong bytes for the digest: drop them, so a later import of a good archive starts clean.
        try:
            content.abort(ref)
        except NotFound:
            pass
        archive.fail(f"{mt.ref_prefix(desc.media_type)} {desc.digest} does not match its digest ({e})")


def _verified(archive: _Archive, data: bytes, desc: Descriptor, name: str) -> None:
    got = sha256_bytes(data)
    if got != desc.digest or len(data) != desc.size:
        archive.fail(
            f"{name} is {len(data)} bytes with digest {got}, but its descriptor says "
            f"{desc.size} bytes with digest {desc.digest}"
        )


def _import_oci(content: Store, archive: _Archive, max_layers: int) -> list[Image]:
    from ctrstore.unpack import plan_layers

    index_what = f"archive {archive.path}: index.json"
    index = archive.read_json("index.json")
    if not isinstance(index, dict):
        raise InvalidArgument(f"{index_what}: must be a JSON object, not {describe_type(index)}")
    top = parse_index(Descriptor(mt.OCI_INDEX, "sha256:" + "0" * 64, 0), index, index_what)
    if archive.has("oci-layout"):
        layout = archive.read_json("oci-layout")
        if not isinstance(layout, dict):
            raise InvalidArgument(f"archive {archive.path}: oci-layout must be a JSON object")
        want_str(layout, "imageLayoutVersion", f"archive {archive.path}: oci-layout")
    names = []
    for i, desc in enumerate(top):
        name = desc.annotations.get(CONTAINERD_NAME) or desc.annotations.get(REF_NAME)
        names.append(_reference_name(name, f"{index_what}: manifests[{i}] name") if name else None)

    def blob_name(desc: Descriptor) -> str:
        return f"blobs/sha256/{desc.digest.split(':', 1)[1]}"

    stored: set[str] = set()

    def store(desc: Descriptor, depth: int) -> None:
        what = f"{mt.ref_prefix(desc.media_type)} {desc.digest}"
        if desc.digest in stored:
            return
        mt.check_supported(desc.media_type, what)
        name = blob_name(desc)
        if not archive.has(name):
            archive.fail(f"lacks blob {desc.digest} ({mt.ref_prefix(desc.media_type)})")
        if mt.is_index(desc.media_type) or mt.is_manifest(desc.media_type):
            if depth > MAX_INDEX_DEPTH:
                archive.fail(f"{what}: indexes nested more than {MAX_INDEX_DEPTH} levels deep")
            check_document_size(desc, f"archive {archive.path}: {what}")
            data = _Member(archive, archive.regular(name)).read()
            _verified(archive, data, desc, name)
            doc = parse_object(data, f"archive {archive.path}: {what}")
            kids = parse_children(desc, doc, f"archive {archive.path}: {what}")
            if mt.is_manifest(desc.media_type):
                config = kids[0]
                check_layer_count(len(kids) - 1, max_layers, f"archive {archive.path}: {what}")
                if config.media_type in mt.CONFIGS:
                    check_document_size(config, f"archive {archive.path}: {what}: config")
                    cdata = _Member(archive, archive.regular(blob_name(config))).read()
                    _verified(archive, cdata, config, blob_name(config))
                    cwhat = f"archive {archive.path}: config {config.digest}"
                    cdoc = validate_config(parse_object(cdata, cwhat), cwhat)
                    plan_layers(doc, cdoc, f"archive {archive.path}: {what}", max_layers=max_layers)
            # An index may list manifests for platforms the archive does not carry; a
            # manifest's config and layers must all be there.
            present = [k for k in kids if archive.has(blob_name(k)) or not mt.is_index(desc.media_type)]
            for k in present:
                store(k, depth + 1)
            _ingest(content, archive, data, desc, gc_child_labels(desc, present) or None)
        else:
            _ingest(content, archive, archive.open(name), desc)
        stored.add(desc.digest)

    created = []
    for desc, name in zip(top, names, strict=True):
        store(desc, 0)
        if name:
            created.append(Image(name, Descriptor(desc.media_type, desc.digest, desc.size)))
    return created


def _docker_entries(archive: _Archive) -> list[tuple[str, list[str], list[str]]]:
    """manifest.json's entries as (Config, Layers, RepoTags normalised), all checked."""
    what = f"archive {archive.path}: manifest.json"
    entries = archive.read_json("manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument(f"{what}: must be a JSON array, not {describe_type(entries)}")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{what}: [{i}] must be an object, not {describe_type(entry)}")
        config = want_str(entry, "Config", what, f"[{i}].Config", required=True)
        layers = want_str_list(entry, "Layers", what, f"[{i}].Layers", required=True)
        tags = want_str_list(entry, "RepoTags", what, f"[{i}].RepoTags") or []
        assert config is not None and layers is not None
        names = [_normalize(t, f"{what}: [{i}].RepoTags") for t in tags]
        out.append((config, layers, names))
    return out


def _import_docker(content: Store, archive: _Archive, max_layers: int) -> list[Image]:
    from ctrstore.unpack import plan_layers

    entries = _docker_entries(archive)
    created = []
    for config_name, layer_names, tags in entries:
        check_layer_count(len(layer_names), max_layers, f"archive {archive.path}: {config_name}")
        m = archive.regular(config_name)
        cwhat = f"archive {archive.path}: {config_name}"
        if m.size > MAX_DOCUMENT_SIZE:
            raise InvalidArgument(f"{cwhat}: {m.size} bytes is more than an image config may have")
        config_bytes = _Member(archive, m).read()
        config_doc = validate_config(parse_object(config_bytes, cwhat), cwhat)
        config = Descriptor(mt.DOCKER_CONFIG, sha256_bytes(config_bytes), len(config_bytes))
        layers = []
        for name in layer_names:
            lm = archive.regular(name)
            f = _Member(archive, lm)
            h = Digester()
            while chunk := f.read(1 << 20):
                h.update(chunk)
            layers.append(Descriptor(mt.DOCKER_LAYER, h.digest(), lm.size))
        manifest_doc = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        plan_layers(manifest_doc, config_doc, cwhat, max_layers=max_layers)
        _ingest(content, archive, config_bytes, config)
        for name, desc in zip(layer_names, layers, strict=True):
            _ingest(content, archive, archive.open(name), desc, {UNCOMPRESSED: desc.digest})
        data = json.dumps(manifest_doc, separators=(",", ":")).encode()
        mdesc = Descriptor(mt.DOCKER_MANIFEST, sha256_bytes(data), len(data))
        _ingest(content, archive, data, mdesc, gc_child_labels(mdesc, [config, *layers]))
        created += [Image(tag, mdesc) for tag in tags]
    return created


def _normalize(name: str, what: str) -> str:
    from ctrstore.remotes.reference import parse

    try:
        return str(parse(name))
    except InvalidArgument as e:
        raise InvalidArgument(f"{what}: {e}") from None
