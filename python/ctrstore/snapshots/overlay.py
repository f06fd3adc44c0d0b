"""The overlayfs snapshotter (``io.containerd.snapshotter.v1.overlayfs``).

Layout under the plugin's root::

    metadata.db              the MetaStore (ids, kinds, parents, labels, usage)
    snapshots/<id>/fs        the snapshot's own changes: an overlay upper dir, or a lower dir
    snapshots/<id>/work      overlay's work dir (active snapshots only)

Committing keeps the id and the directory. Mounts follow containerd exactly: no parent -> a
bind mount of ``fs``; a view of one parent -> a read-only bind of the parent's ``fs``;
otherwise an overlay with ``lowerdir`` = the parents' ``fs`` dirs, nearest first, plus
``upperdir``/``workdir`` for active snapshots.

With a ``mount_program`` (rootless where the kernel's overlay does not mount in the user
namespace, or when the config asks for it) the overlay is served by that FUSE program, as
containerd's fuse-overlayfs snapshotter does: type ``fuse3.fuse-overlayfs``, source
``overlay``, the same ``lowerdir``/``upperdir``/``workdir`` options (``ctrstore.mount`` runs
the program). The directories are the same; fuse-overlayfs reads the whiteouts and opaque
markers the applier writes (0:0 character devices, ``user.overlay.opaque``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ctrstore.errdefs import Unimplemented
from ctrstore.labels import OVERLAY_UPPERDIR
from ctrstore.mount import Mount
from ctrstore.snapshots import Info, Kind
from ctrstore.snapshots._base import DirectorySnapshotter
from ctrstore.snapshots.storage import Snapshot

__all__ = ["FUSE_OVERLAYFS", "OverlaySnapshotter", "check_overlay", "probe_fuse", "probe_userxattr"]

FUSE_OVERLAYFS = "fuse-overlayfs"
"""The FUSE overlay program (Debian's fuse-overlayfs package), the rootless fallback."""


def check_overlay() -> None:
    """Raise Unimplemented unless the kernel has overlayfs."""
    try:
        with open("/proc/filesystems") as f:
            if any(line.split() and line.split()[-1] == "overlay" for line in f):
                return
    except OSError:
        pass
    if not Path("/sys/module/overlay").exists():
        raise Unimplemented("the kernel has no overlay file system (try: modprobe overlay)")


def probe_userxattr(root: Path) -> str:
    """Mount a tiny overlay with ``userxattr`` under ``root`` (in a user namespace, as
    containerd's ``NeedsUserXAttr`` does): "" when it works, else why not."""
    return _probe(root, "overlay", ("userxattr",), "userxattr-probe-")


def probe_fuse(root: Path, program: str = FUSE_OVERLAYFS) -> str:
    """Mount a tiny overlay through the FUSE ``program`` under ``root`` (and unmount it, which
    ends the program): "" when it works, else why not (not installed, /dev/fuse not usable)."""
    from ctrstore.mount import fuse_program_path

    if fuse_program_path(program) is None:
        return f"{program} is not installed"
    reason = _probe(root, f"fuse3.{program}", (), "fuse-probe-")
    if "/dev/fuse" in reason and "ermission denied" in reason:
        reason += "; /dev/fuse must be usable by the user: mode 0666, Debian's default"
    return reason


def _probe(root: Path, type_: str, extra: tuple[str, ...], prefix: str) -> str:
    import tempfile

    from ctrstore.mount import mount_all, unmount

    base = Path()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=prefix, dir=root) as d:
            base = Path(d)
            for sub in ("lower", "upper", "work", "merged"):
                (base / sub).mkdir()
            opts = (
                f"lowerdir={base / 'lower'}",
                f"upperdir={base / 'upper'}",
                f"workdir={base / 'work'}",
                *extra,
            )
            mount_all([Mount(type_, "overlay", opts)], base / "merged")
            unmount(base / "merged")
    except Exception as e:
        return (str(e) or type(e).__name__).replace(f" {base / 'merged'}", " a test mount")
    return ""


class OverlaySnapshotter(DirectorySnapshotter):
    rebase = True
    status_note = ""
    """What ``plugin ls`` adds to "ok" (rootless: mounted with userxattr, or fuse-overlayfs)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        mount_options: Sequence[str] = (),
        upperdir_label: bool = False,
        mount_program: str = "",
    ) -> None:
        super().__init__(root)
        opts = list(mount_options)
        index_param = Path("/sys/module/overlay/parameters/index")
        if not mount_program and not any(o.startswith("index=") for o in opts) and index_param.exists():
            opts.append("index=off")
        self.options = tuple(opts)
        self.upperdir_label = upperdir_label
        self.mount_type = f"fuse3.{mount_program}" if mount_program else "overlay"
        """``overlay`` (the kernel's) or ``fuse3.<mount_program>`` (fuse-overlayfs)."""

    def upper(self, id_: str) -> Path:
        return self._dir(id_) / "fs"

    def _tree(self, id_: str) -> Path:
        return self.upper(id_)

    def _decorate(self, id_: str, info: Info) -> Info:
        if not self.upperdir_label:
            return info
        labels = {**info.labels, OVERLAY_UPPERDIR: str(self.upper(id_))}
        return Info(info.kind, info.name, info.parent, labels, info.created_at, info.updated_at)

    def _populate(self, tmp: Path, s: Snapshot) -> None:
        tmp.mkdir(mode=0o700)
        (tmp / "fs").mkdir()
        os.chmod(tmp / "fs", 0o755)
        if s.kind == Kind.ACTIVE:
            (tmp / "work").mkdir()
            os.chmod(tmp / "work", 0o711)
        if s.parent_ids:
            st = os.stat(self.upper(s.parent_ids[0]))
            os.lchown(tmp / "fs", st.st_uid, st.st_gid)

    def _mounts(self, s: Snapshot) -> list[Mount]:
        if not s.parent_ids:
            rw = "rw" if s.kind == Kind.ACTIVE else "ro"
            return [Mount("bind", str(self.upper(s.id)), (rw, "rbind"))]
        if s.kind == Kind.VIEW and len(s.parent_ids) == 1:
            return [Mount("bind", str(self.upper(s.parent_ids[0])), ("ro", "rbind"))]
        options: list[str] = []
        if s.kind == Kind.ACTIVE:
            options += [f"workdir={self._dir(s.id) / 'work'}", f"upperdir={self.upper(s.id)}"]
        options.append("lowerdir=" + ":".join(str(self.upper(p)) for p in s.parent_ids))
        options += self.options
        return [Mount(self.mount_type, "overlay", tuple(options))]
