"""Pushing an image, as containerd's ``client.Push``: find the image, resolve the reference
at its registry, and push the image's blobs (``ctrstore.images.push``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ctrstore.images.pull import Status
from ctrstore.images.push import push_content

if TYPE_CHECKING:
    from ctrstore.client.client import Client

__all__ = ["push"]


def push(
    client: Client,
    name: str,
    ref: str | None = None,
    *,
    plain_http: bool = False,
    hosts_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[Status], None] | None = None,
) -> list[tuple[str, str]]:
    """``Client.push``: push image ``name`` to ``ref`` (default: the name itself); returns
    ``(ref key, outcome)`` per descriptor (exists, mounted, uploaded)."""
    from ctrstore.remotes import Resolver, parse

    reference = parse(ref or name)
    with Resolver(hosts_dir=hosts_dir, plain_http=plain_http) as resolver:
        image = client.images.get(name)
        return push_content(
            client.content,
            image.target,
            resolver.pusher(reference),
            tag=reference.tag,
            progress=progress or (lambda s: None),
        )
