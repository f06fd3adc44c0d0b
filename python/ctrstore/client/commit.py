"""``ctrstore commit``: a container's changes as a new image. The orchestration is here (find
the container and its snapshotter, hold a lease); the layer itself is made by
``ctrstore.runtime.commit.commit``, which takes the roles it writes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ctrstore.metadata.images import Image, validate_name
from ctrstore.runtime.commit import commit

if TYPE_CHECKING:
    from ctrstore.client.client import Client

__all__ = ["commit_container"]


def commit_container(
    client: Client, container: str, name: str, *, compression: Literal["gzip", "zstd"] = "gzip"
) -> Image:
    """:func:`~ctrstore.runtime.commit.commit` of ``container`` (its id, name or a unique id
    prefix) with the client's stores, under a lease, so that gc keeps the new blobs until the
    image names them."""
    validate_name(name)  # before any work: a bad name is the error, whatever the container
    mgr = client.containers
    c = mgr.store.get(mgr.resolve(container))
    sn = client.snapshotter(c.snapshotter)
    with client.lease():
        return commit(
            c,
            name,
            snapshotter=sn,
            content=client.content,  # (taken inside the lease: it writes under it)
            images=client.images,
            tmp_dir=client.root / "tmpmounts",
            compression=compression,
        )
