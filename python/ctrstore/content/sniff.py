"""What a blob is, by its bytes (libmagic through python-magic): ``gzip compressed data``,
``JSON text data``, ``POSIX tar archive``... Shown by ``content ls --verbose`` and ``content info``."""

from __future__ import annotations

import os


def describe(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(mime type, description)`` of a file, e.g. ``("application/gzip", "gzip compressed data, ...")``."""
    import magic  # loads libmagic: only when asked

    p = os.fspath(path)
    return magic.from_file(p, mime=True), magic.from_file(p)
