"""Image archives in and out of a client's namespace, as containerd's ``client.Import`` and
``client.Export``: the archive formats are ``ctrstore.images.archive``'s (which take the
content and image stores); here the client's stores are handed over, and an import holds a
lease so that gc keeps its blobs until the images name them."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ctrstore.errdefs import from_oserror
from ctrstore.images.archive import export_images, import_images
from ctrstore.metadata.images import Image

if TYPE_CHECKING:
    from ctrstore.client.client import Client

__all__ = ["export_archive", "import_archive", "import_stream"]


def import_archive(client: Client, path: str | os.PathLike[str]) -> list[Image]:
    """Import an OCI layout tar or a ``docker save`` tar; returns the images created or
    updated (see :func:`ctrstore.images.archive.import_images`)."""
    with client.lease():
        return import_images(client.content, client.images, path, max_layers=client.config.max_layers)


def import_stream(client: Client, stream: IO[bytes]) -> list[Image]:
    """Import an archive read from ``stream`` (``images import -``, ``load`` from stdin): a
    regular file behind it is read in place; anything else (a pipe) is first copied into a
    temporary file under the store's root, as the archive's members are read out of order."""
    try:
        fd = stream.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        regular = False
    if regular:
        return import_archive(client, f"/proc/self/fd/{fd}")
    client.root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.NamedTemporaryFile(dir=client.root, prefix=".import-", suffix=".tar") as tmp:
            shutil.copyfileobj(stream, tmp, 1 << 20)
            tmp.flush()
            return import_archive(client, tmp.name)
    except OSError as e:
        raise from_oserror(e, f"spooling the archive from stdin into {client.root}") from None


def export_archive(client: Client, images: Sequence[Image], out: IO[bytes]) -> int:
    """Write ``images`` as an OCI layout tar to ``out``; returns the number of blobs (see
    :func:`ctrstore.images.archive.export_images`)."""
    return export_images(client.content, images, out)
