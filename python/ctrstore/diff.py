"""Applying a layer to a snapshot's mounts, as containerd's diff applier does.

When the mounts are one overlay with an ``upperdir``, the layer is written straight into the
upper dir with overlay whiteouts (no mount needed), the lower dirs serving as parents. A
single writable bind mount (a first layer, native or btrfs snapshots) is its source
directory, so the layer is applied there directly with plain whiteout handling: no mount is
made, so none can be left behind by a killed process. Anything else is mounted on a temporary
directory and the layer applied there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from ctrstore._core import IngestWatch, LayerDecoder
from ctrstore.archive import ApplyStats, apply_layer
from ctrstore.mount import Mount, temp_mount

__all__ = ["apply", "overlay_upper"]


def overlay_upper(mounts: Sequence[Mount]) -> tuple[str, list[str]] | None:
    """``(upperdir, lowerdirs)`` when ``mounts`` is a single writable overlay (the kernel's or
    fuse-overlayfs: the same directories), else None."""
    if len(mounts) != 1 or not mounts[0].is_overlay:
        return None
    upper = ""
    lowers: list[str] = []
    for opt in mounts[0].options:
        if opt.startswith("upperdir="):
            upper = opt[len("upperdir=") :]
        elif opt.startswith("lowerdir="):
            lowers = opt[len("lowerdir=") :].split(":")
    return (upper, lowers) if upper else None


def apply(
    mounts: Sequence[Mount],
    layer: str | os.PathLike[str] | BinaryIO | IngestWatch | LayerDecoder,
    *,
    tmp_dir: str | os.PathLike[str],
) -> ApplyStats:
    """Apply ``layer`` to the snapshot behind ``mounts``; ``tmp_dir`` holds temporary mounts."""
    direct = overlay_upper(mounts)
    if direct is not None:
        upper, lowers = direct
        return apply_layer(upper, layer, whiteouts="overlay", parents=lowers)
    if len(mounts) == 1 and mounts[0].type == "bind" and "ro" not in mounts[0].options:
        return apply_layer(mounts[0].source, layer, whiteouts="delete")
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    with temp_mount(mounts, tmp_dir) as root:
        return apply_layer(root, layer, whiteouts="delete")
