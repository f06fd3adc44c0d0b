"""The native snapshotter (``io.containerd.snapshotter.v1.native``): plain directory copies.

``snapshots/<id>`` *is* the tree. A child starts as a full copy of its parent (owners, modes,
times, xattrs, hard links and devices kept); mounts are bind mounts. Slower and bigger than
overlay, but it works on any file system and where overlay cannot be mounted.
"""

from __future__ import annotations

import os
from pathlib import Path

from ctrstore.mount import Mount
from ctrstore.snapshots import Kind
from ctrstore.snapshots._base import DirectorySnapshotter
from ctrstore.snapshots._fs import copy_tree
from ctrstore.snapshots.storage import Snapshot

__all__ = ["NativeSnapshotter"]


class NativeSnapshotter(DirectorySnapshotter):
    def _tree(self, id_: str) -> Path:
        return self._dir(id_)

    def _populate(self, tmp: Path, s: Snapshot) -> None:
        tmp.mkdir()
        os.chmod(tmp, 0o755)
        if s.parent_ids:
            copy_tree(self._dir(s.parent_ids[0]), tmp)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        rw = "rw" if s.kind == Kind.ACTIVE else "ro"
        return [Mount("bind", str(self._dir(s.id)), (rw, "rbind"))]
