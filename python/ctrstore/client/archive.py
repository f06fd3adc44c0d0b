"""Image archives in and out of a client's namespace, as containerd's ``client.Import`` and
``client.Export``: the archive formats are ``ctrstore.images.archive``'s (which take the
content and image stores); here the client's stores are handed over, and an import holds a
lease so that gc keeps its blobs until the images name them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ctrstore.images.archive import export_images, import_images
from ctrstore.metadata.images import Image

if TYPE_CHECKING:
    from ctrstore.client.client import Client

__all__ = ["export_archive", "import_archive"]


def import_archive(client: Client, path: str | os.PathLike[str]) -> list[Image]:
    """Import an OCI layout tar or a ``docker save`` tar; returns the images created or
    updated (see :func:`ctrstore.images.archive.import_images`)."""
    with client.lease():
        return import_images(client.content, client.images, path, max_layers=client.config.max_layers)


def export_archive(client: Client, images: Sequence[Image], out: IO[bytes]) -> int:
    """Write ``images`` as an OCI layout tar to ``out``; returns the number of blobs (see
    :func:`ctrstore.images.archive.export_images`)."""
    return export_images(client.content, images, out)
