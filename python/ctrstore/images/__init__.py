"""Images: manifests, indexes, configs and layers, as stored in the content store.

Helpers here read what a stored image is made of: the manifest for a platform, its config,
its layers and their diffIDs, and the chainIDs that name its unpacked snapshots.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from ctrstore.content import Descriptor
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform, host, rank
from ctrstore.metadata.content import ContentStore

__all__ = ["chain_ids", "children", "gc_child_labels", "manifest_for", "read_json", "rootfs_diff_ids"]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """chainID[0] = diffID[0]; chainID[i] = sha256("chainID[i-1] diffID[i]")."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def read_json(content: ContentStore, desc: Descriptor) -> dict[str, Any]:
    data = content.read_bytes(desc.digest)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidArgument(
            f"{mt.ref_prefix(desc.media_type)} {desc.digest} is not valid JSON: {e}"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{desc.digest} is not a JSON object")
    return doc


def parse_children(desc: Descriptor, doc: dict[str, Any]) -> list[Descriptor]:
    """The descriptors a manifest or index points at (config first, then layers)."""
    what = f"{mt.ref_prefix(desc.media_type)} {desc.digest}"
    try:
        if mt.is_index(desc.media_type):
            if "config" in doc or "layers" in doc:
                raise InvalidArgument(f"{what}: an index must not have config or layers")
            return [Descriptor.from_json(m) for m in doc.get("manifests") or []]
        if mt.is_manifest(desc.media_type):
            if "manifests" in doc:
                raise InvalidArgument(f"{what}: a manifest must not list manifests")
            config = Descriptor.from_json(doc["config"])
            return [config, *(Descriptor.from_json(layer) for layer in doc.get("layers") or [])]
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(f"{what}: malformed ({type(e).__name__}: {e})") from None
    return []


def children(content: ContentStore, desc: Descriptor) -> list[Descriptor]:
    if not (mt.is_index(desc.media_type) or mt.is_manifest(desc.media_type)):
        return []
    return parse_children(desc, read_json(content, desc))


def gc_child_labels(desc: Descriptor, kids: Sequence[Descriptor]) -> dict[str, str]:
    """The ``containerd.io/gc.ref.content.*`` labels a parent blob carries for its children."""
    labels: dict[str, str] = {}
    if mt.is_index(desc.media_type):
        for i, k in enumerate(kids):
            labels[f"containerd.io/gc.ref.content.m.{i}"] = k.digest
    elif mt.is_manifest(desc.media_type):
        for i, k in enumerate(kids):
            if i == 0:
                labels["containerd.io/gc.ref.content.config"] = k.digest
            else:
                labels[f"containerd.io/gc.ref.content.l.{i - 1}"] = k.digest
    return labels


def manifest_for(
    content: ContentStore, target: Descriptor, platform: Platform | None = None
) -> tuple[Descriptor, dict[str, Any]]:
    """The manifest (descriptor and JSON) a target resolves to for ``platform``."""
    want = platform or host()
    desc = target
    for _ in range(8):
        if mt.is_manifest(desc.media_type):
            return desc, read_json(content, desc)
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
    raise InvalidArgument(f"index nesting too deep at {desc.digest}")


def rootfs_diff_ids(config: dict[str, Any], what: str) -> list[str]:
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type", "layers") not in ("layers", ""):
        raise InvalidArgument(f"{what}: rootfs type {rootfs.get('type')!r} is not supported")
    ids = rootfs.get("diff_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidArgument(f"{what}: rootfs.diff_ids is missing or malformed")
    return list(ids)
