"""The btrfs snapshotter (``io.containerd.snapshotter.v1.btrfs``): one subvolume per snapshot.

``snapshots/<id>`` is a subvolume: empty for a snapshot without parent, a btrfs snapshot of
the parent's subvolume otherwise (copy-on-write, instant). Committing makes it read-only; a
view is a read-only snapshot. Mounts are bind mounts of the subvolume. The plugin is skipped
unless its root is on btrfs. The work is done by ``btrfs`` from btrfs-progs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ctrstore.errdefs import Internal, Unimplemented
from ctrstore.mount import Mount
from ctrstore.snapshots import Kind
from ctrstore.snapshots._base import DirectorySnapshotter
from ctrstore.snapshots.storage import Snapshot

__all__ = ["BtrfsSnapshotter", "check_btrfs"]


def _fstype(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mountinfo, which
    is cheaper than a statfs helper process)."""
    from ctrstore.mount import mountinfo

    target = path.resolve()
    best, kind = -1, ""
    for m in mountinfo():
        mp = m.mount_point
        if (target == mp or mp in target.parents) and len(mp.parts) > best:
            best, kind = len(mp.parts), m.fstype
    return kind


def check_btrfs(root: Path) -> None:
    """Raise Unimplemented unless ``root`` (or its nearest existing parent) is on btrfs and
    the ``btrfs`` tool is installed."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    kind = _fstype(probe)
    if kind != "btrfs":
        raise Unimplemented(f"{probe} is on {kind or 'an unknown file system'}, not btrfs")
    if shutil.which("btrfs") is None:
        raise Unimplemented("the btrfs tool is not installed (apt-get install btrfs-progs)")


def _btrfs(*args: str) -> None:
    r = subprocess.run(["btrfs", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise Internal(f"btrfs {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")


def _is_subvolume(path: Path) -> bool:
    try:
        return path.stat().st_ino == 256  # btrfs gives every subvolume root inode 256
    except FileNotFoundError:
        return False


class BtrfsSnapshotter(DirectorySnapshotter):
    def __init__(self, root: str | Path) -> None:
        check_btrfs(Path(root))
        super().__init__(root)

    def _tree(self, id_: str) -> Path:
        return self._dir(id_)

    def _populate(self, tmp: Path, s: Snapshot) -> None:
        readonly = ("-r",) if s.kind == Kind.VIEW else ()
        if s.parent_ids:
            _btrfs("subvolume", "snapshot", *readonly, str(self._dir(s.parent_ids[0])), str(tmp))
        else:
            _btrfs("subvolume", "create", str(tmp))
            tmp.chmod(0o755)
            if readonly:
                _btrfs("property", "set", "-ts", str(tmp), "ro", "true")

    def _committed(self, id_: str) -> None:
        _btrfs("property", "set", "-ts", str(self._dir(id_)), "ro", "true")

    def _delete_dir(self, path: Path) -> None:
        if _is_subvolume(path):
            _btrfs("subvolume", "delete", str(path))
        else:
            super()._delete_dir(path)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        rw = "rw" if s.kind == Kind.ACTIVE else "ro"
        return [Mount("bind", str(self._dir(s.id)), (rw, "rbind"))]
