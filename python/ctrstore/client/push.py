"""Pushing an image, as containerd's ``client.Push``: once ``Client.push`` has resolved the
reference, the image is looked up and its blobs pushed (``ctrstore.images.push``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ctrstore.images.pull import Status
from ctrstore.images.push import push_content

if TYPE_CHECKING:
    from ctrstore.client.client import Client
    from ctrstore.remotes.docker import Pusher

__all__ = ["push_image"]


def push_image(
    client: Client,
    name: str,
    pusher: Pusher,
    *,
    tag: str | None,
    progress: Callable[[Status], None] | None = None,
) -> list[tuple[str, str]]:
    """Push image ``name`` of ``client``'s namespace with ``pusher`` (its root tagged ``tag``);
    returns ``(ref key, outcome)`` per descriptor (exists, mounted, uploaded)."""
    image = client.images.get(name)
    return push_content(client.content, image.target, pusher, tag=tag, progress=progress or (lambda s: None))
