"""Images: manifests, indexes, configs and layers, as stored in the content store.

Helpers here read what a stored image is made of: the manifest for a platform, its config,
its layers and their diffIDs (:func:`resolve`, the one way from an image's target to them),
and the chainIDs that name its unpacked snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ctrstore import _core
from ctrstore.content import Descriptor, Provider
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform, host, rank
from ctrstore.jsondoc import (
    describe_type,
    fail,
    loads,
    want_bool,
    want_int,
    want_list,
    want_object,
    want_str,
    want_str_list,
    want_str_map,
)
from ctrstore.labels import GC_REF_CONTENT

__all__ = [
    "MAX_DOCUMENT_SIZE",
    "MAX_INDEX_DEPTH",
    "chain_ids",
    "check_document_size",
    "check_layer_count",
    "children",
    "gc_child_labels",
    "manifest_for",
    "parse_children",
    "parse_index",
    "parse_manifest",
    "read_config",
    "read_json",
    "Resolved",
    "resolve",
    "rootfs_diff_ids",
    "validate_config",
]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """chainID[0] = diffID[0]; chainID[i] = sha256("chainID[i-1] diffID[i]")."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else _core.sha256_bytes(f"{out[-1]} {d}".encode()))
    return out


MAX_DOCUMENT_SIZE = 4 * 1048 * 1048
"""The largest manifest, index or image config read into memory: containerd's manifest limit
(``4 * 1048 * 1048``, about 4 MiB, as ``ctrstore.remotes.docker.MAX_MANIFEST_SIZE``); a
descriptor claiming more is refused before anything is fetched or read."""

MAX_INDEX_DEPTH = 8
"""How many indexes deep a manifest may be nested below an image's target."""


def describe(desc: Descriptor) -> str:
    """``manifest sha256:...``: what a blob is, for messages."""
    return f"{mt.ref_prefix(desc.media_type)} {desc.digest}"


def check_document_size(desc: Descriptor, what: str | None = None) -> None:
    """Refuse a JSON document (manifest, index, config) larger than MAX_DOCUMENT_SIZE before
    it is fetched or read."""
    if desc.size > MAX_DOCUMENT_SIZE:
        raise InvalidArgument(
            f"{what or describe(desc)}: {desc.size} bytes is more than the {MAX_DOCUMENT_SIZE} "
            "bytes a manifest, index or config may have"
        )


def read_json(content: Provider, desc: Descriptor) -> dict[str, Any]:
    """A stored JSON document (strictly parsed: see ``ctrstore.jsondoc.loads``), which must be
    an object."""
    what = describe(desc)
    check_document_size(desc, what)
    with content.open(desc.digest) as f:
        data = f.read(MAX_DOCUMENT_SIZE + 1)
    if len(data) > MAX_DOCUMENT_SIZE:
        raise InvalidArgument(f"{what}: more than the {MAX_DOCUMENT_SIZE} bytes a JSON document may have")
    return parse_object(data, what)


def parse_object(data: bytes, what: str) -> dict[str, Any]:
    doc = loads(data, what)
    if not isinstance(doc, dict):
        fail(what, f"must be a JSON object, not {describe_type(doc)}")
    return doc


def _common_fields(doc: dict[str, Any], what: str) -> None:
    want_int(doc, "schemaVersion", what, minimum=2, maximum=2)
    want_str(doc, "mediaType", what)
    want_str(doc, "artifactType", what)
    want_str_map(doc, "annotations", what)
    if doc.get("subject") is not None:
        Descriptor.from_json(doc["subject"], f"{what}: subject")


def _descriptors(doc: dict[str, Any], key: str, what: str, *, required: bool = False) -> list[Descriptor]:
    items = want_list(doc, key, what, required=required) or []
    return [Descriptor.from_json(item, f"{what}: {key}[{i}]") for i, item in enumerate(items)]


def parse_index(desc: Descriptor, doc: dict[str, Any], what: str | None = None) -> list[Descriptor]:
    """The manifests an index lists, every field type-checked (``what`` names the index in
    messages; default: its kind and digest)."""
    what = what or describe(desc)
    if "config" in doc or "layers" in doc or doc.get("mediaType") in mt.MANIFESTS:
        raise InvalidArgument(f"{what}: an index must not have config or layers (it is a manifest)")
    _common_fields(doc, what)
    return _descriptors(doc, "manifests", what, required=True)


def parse_manifest(
    desc: Descriptor, doc: dict[str, Any], what: str | None = None
) -> tuple[Descriptor, list[Descriptor]]:
    """A manifest's config and layers, every field type-checked."""
    what = what or describe(desc)
    if "manifests" in doc or doc.get("mediaType") in mt.INDEXES:
        raise InvalidArgument(f"{what}: a manifest must not list manifests (it is an index)")
    _common_fields(doc, what)
    config = Descriptor.from_json(want_object(doc, "config", what, required=True), f"{what}: config")
    return config, _descriptors(doc, "layers", what, required=True)


def parse_children(desc: Descriptor, doc: dict[str, Any], what: str | None = None) -> list[Descriptor]:
    """The descriptors a manifest or index points at (config first, then layers)."""
    if mt.is_index(desc.media_type):
        return parse_index(desc, doc, what)
    if mt.is_manifest(desc.media_type):
        config, layers = parse_manifest(desc, doc, what)
        return [config, *layers]
    return []


def check_layer_count(n: int, max_layers: int, what: str) -> None:
    if n > max_layers:
        raise InvalidArgument(
            f"{what}: {n} layers is more than the {max_layers} allowed "
            "(max_layers in config.toml raises the limit)"
        )


def validate_config(config: dict[str, Any], what: str) -> dict[str, Any]:
    """Type-check an image config (OCI image-spec ``config.md``, Docker's v1 image JSON):
    every field ctrstore or the runtime spec reads, so that a config with a wrong type is an
    InvalidArgument naming the field, wherever it is used later. Returns ``config``."""
    for key in ("created", "author", "architecture", "os", "os.version", "variant"):
        want_str(config, key, what)
    want_str_list(config, "os.features", what)
    inner = want_object(config, "config", what)
    if inner is not None:
        for key in ("User", "WorkingDir", "StopSignal"):
            want_str(inner, key, what, f"config.{key}")
        for key in ("Env", "Entrypoint", "Cmd"):
            values = want_str_list(inner, key, what, f"config.{key}") or []
            for i, v in enumerate(values):
                if "\0" in v:
                    fail(what, f"config.{key}[{i}] contains a NUL character")
        for key in ("ExposedPorts", "Volumes"):
            want_object(inner, key, what, f"config.{key}")
        want_str_map(inner, "Labels", what, "config.Labels")
        want_bool(inner, "ArgsEscaped", what, "config.ArgsEscaped")
    rootfs = want_object(config, "rootfs", what)
    if rootfs is not None:
        want_str(rootfs, "type", what, "rootfs.type")
        for i, d in enumerate(want_str_list(rootfs, "diff_ids", what, "rootfs.diff_ids") or []):
            if len(d) > 200:
                fail(what, f"rootfs.diff_ids[{i}] is {len(d)} characters long, not a digest")
            try:
                _core.parse_digest(d)
            except ValueError as e:
                fail(what, f"rootfs.diff_ids[{i}]: {e}")
    for i, h in enumerate(want_list(config, "history", what) or []):
        field = f"history[{i}]"
        if not isinstance(h, dict):
            fail(what, f"{field} must be an object, not {describe_type(h)}")
        for key in ("created", "created_by", "author", "comment"):
            want_str(h, key, what, f"{field}.{key}")
        want_bool(h, "empty_layer", what, f"{field}.empty_layer")
    return config


def read_config(content: Provider, desc: Descriptor) -> dict[str, Any]:
    """A stored image config, type-checked by :func:`validate_config`."""
    return validate_config(read_json(content, desc), describe(desc))


def children(content: Provider, desc: Descriptor) -> list[Descriptor]:
    if not (mt.is_index(desc.media_type) or mt.is_manifest(desc.media_type)):
        return []
    return parse_children(desc, read_json(content, desc))


def gc_child_labels(desc: Descriptor, kids: Sequence[Descriptor]) -> dict[str, str]:
    """The ``containerd.io/gc.ref.content.*`` labels a parent blob carries for its children."""
    labels: dict[str, str] = {}
    if mt.is_index(desc.media_type):
        for i, k in enumerate(kids):
            labels[f"{GC_REF_CONTENT}.m.{i}"] = k.digest
    elif mt.is_manifest(desc.media_type):
        for i, k in enumerate(kids):
            if i == 0:
                labels[f"{GC_REF_CONTENT}.config"] = k.digest
            else:
                labels[f"{GC_REF_CONTENT}.l.{i - 1}"] = k.digest
    return labels


@dataclass(frozen=True)
class Resolved:
    """What an image's target is for one platform: its manifest and what that points at."""

    manifest: Descriptor
    doc: dict[str, Any]
    """The manifest's JSON (type-checked)."""
    config: Descriptor
    layers: list[Descriptor]
    """Bottom first."""


def resolve(content: Provider, target: Descriptor, platform: Platform | None = None) -> Resolved:
    """The manifest a target (an index or a manifest) resolves to for ``platform`` (default:
    this machine's), with its config and layers, every field type-checked. NotFound if a
    blob on the way is missing or no manifest matches the platform."""
    want = platform or host()
    desc = target
    for _ in range(MAX_INDEX_DEPTH + 1):
        if mt.is_manifest(desc.media_type):
            doc = read_json(content, desc)
            config, layers = parse_manifest(desc, doc)
            return Resolved(desc, doc, config, layers)
        if not mt.is_index(desc.media_type):
            raise InvalidArgument(f"{desc.digest} is a {desc.media_type}, not a manifest or index")
        candidates = []
        for m in children(content, desc):
            r = rank(m.platform, want)
            if r is not None and (mt.is_manifest(m.media_type) or mt.is_index(m.media_type)):
                candidates.append((r, m))
        if not candidates:
            raise NotFound(f"no manifest for platform {want} in {desc.digest}")
        desc = min(candidates, key=lambda c: c[0])[1]
    raise InvalidArgument(f"index nesting too deep at {desc.digest} (more than {MAX_INDEX_DEPTH} levels)")


def manifest_for(
    content: Provider, target: Descriptor, platform: Platform | None = None
) -> tuple[Descriptor, dict[str, Any]]:
    """The manifest (descriptor and JSON) a target resolves to for ``platform`` (see
    :func:`resolve`)."""
    r = resolve(content, target, platform)
    return r.manifest, r.doc


def rootfs_diff_ids(config: dict[str, Any], what: str) -> list[str]:
    """The config's ``rootfs.diff_ids`` (the config type-checked first)."""
    validate_config(config, what)
    rootfs = want_object(config, "rootfs", what, required=True)
    assert rootfs is not None
    if rootfs.get("type", "layers") not in ("layers", ""):
        raise InvalidArgument(f"{what}: rootfs type {rootfs.get('type')!r} is not supported")
    ids = want_str_list(rootfs, "diff_ids", what, "rootfs.diff_ids", required=True)
    assert ids is not None
    return list(ids)
