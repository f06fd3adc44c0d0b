"""Pushing an image's blobs: every blob first (children before parents; existence checks,
cross-repo mounts from where the blob was pulled, monolithic or chunked uploads), then the
manifests by digest and the root by tag. It takes the content to read (a ``Provider``) and a
``Pusher``; the client (``ctrstore.client.push``) finds the image and resolves the
reference."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ctrstore.content import Descriptor, Provider
from ctrstore.errdefs import NotFound
from ctrstore.images import children
from ctrstore.images import mediatypes as mt
from ctrstore.images.pull import Status, ref_key
from ctrstore.labels import DISTRIBUTION_SOURCE

if TYPE_CHECKING:
    from ctrstore.remotes.docker import Pusher

__all__ = ["push_content"]


def _tree(content: Provider, desc: Descriptor) -> list[Descriptor]:
    """Descriptors to push, children before parents; manifests of platforms never pulled are
    left out (and so is their entry's absence an error only for layers and configs)."""
    out: list[Descriptor] = []
    for child in children(content, desc):
        if not content.exists(child.digest):
            if mt.is_manifest(child.media_type) or mt.is_index(child.media_type):
                continue
            raise NotFound(f"cannot push: {ref_key(child)} is not in the content store (pull it first)")
        out += _tree(content, child)
    out.append(desc)
    return out


def push_content(
    content: Provider,
    target: Descriptor,
    pusher: Pusher,
    *,
    tag: str | None,
    progress: Callable[[Status], None] = lambda s: None,
    workers: int = 3,
) -> list[tuple[str, str]]:
    """Push ``target`` and everything below it; returns ``(ref key, outcome)`` per
    descriptor (exists, mounted, uploaded)."""
    descs = list({d.digest: d for d in _tree(content, target)}.values())
    blobs = [d for d in descs if not (mt.is_manifest(d.media_type) or mt.is_index(d.media_type))]
    manifests = [d for d in descs if mt.is_manifest(d.media_type) or mt.is_index(d.media_type)]
    host = pusher.ref.domain
    results: list[tuple[str, str]] = []

    def push_blob(d: Descriptor) -> tuple[str, str]:
        key = ref_key(d)
        progress(Status(key, "uploading", 0, d.size))
        sources = content.info(d.digest).labels.get(f"{DISTRIBUTION_SOURCE}{host}", "")
        with content.open(d.digest) as f:
            outcome = pusher.push(d, f, mount_from=[s for s in sources.split(",") if s])
        progress(Status(key, "done" if outcome == "uploaded" else outcome, d.size, d.size))
        return key, outcome

    with ThreadPoolExecutor(workers, thread_name_prefix="ctrstore-push") as pool:
        results += list(pool.map(push_blob, blobs))
    for d in manifests:
        key = ref_key(d)
        data = content.read_bytes(d.digest)
        progress(Status(key, "uploading", 0, d.size))
        outcome = pusher.push(d, data, tag=tag if d.digest == target.digest else None)
        progress(Status(key, "done" if outcome == "uploaded" else outcome, d.size, d.size))
        results.append((key, outcome))
    return results
