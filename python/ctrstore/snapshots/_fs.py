"""File-system helpers the drivers share: disk usage, copies, removal."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ctrstore.errdefs import Internal, from_oserror
from ctrstore.snapshots import Usage


def disk_usage(root: Path) -> Usage:
    """Inodes and bytes (allocated blocks) of a tree, counting hard-linked files once."""
    seen: set[tuple[int, int]] = set()
    inodes = size = 0
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            continue
        inodes += 1
        size += st.st_blocks * 512
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                    continue
                est = e.stat(follow_symlinks=False)
                ident = (est.st_dev, est.st_ino)
                if ident in seen:
                    continue
                seen.add(ident)
                inodes += 1
                size += est.st_blocks * 512
    return Usage(inodes, size)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a tree into an existing empty ``dst`` keeping owners, modes, times, xattrs, hard
    links and devices (``cp -a``, with reflinks where the file system has them)."""
    r = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", str(dst)], capture_output=True, text=True)
    if r.returncode != 0:
        raise Internal(f"copying {src} to {dst} failed: {r.stderr.strip()}")


def remove_tree(path: Path) -> None:
    """Remove a file or a whole tree (as Go's os.RemoveAll); a missing path is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise from_oserror(e, f"removing {path}") from e
