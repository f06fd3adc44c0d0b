"""Type stubs for ``ctrstore._core``, the PyO3 module built from ``rust/ctrstore-py``.

Every function raises ``ctrstore.errdefs`` exceptions. Long work (hashing, copying) runs with
the GIL released.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import final

__all__ = [
    "Digester",
    "apply_layer_fd",
    "apply_layer_path",
    "IngestWriter",
    "MountInfo",
    "__version__",
    "abort_ingest",
    "blob_path",
    "errno_kind",
    "errno_kinds",
    "ingest_dir",
    "ingest_in_use",
    "mount",
    "mountinfo",
    "parse_digest",
    "sha256_bytes",
    "sha256_file",
    "unmount",
    "unmount_all",
]

__version__: str

@final
class Digester:
    """Streaming SHA-256 whose state can be saved and restored."""

    def __new__(cls) -> Digester: ...
    def update(self, data: bytes | bytearray | memoryview) -> None: ...
    def digest(self) -> str:
        """``sha256:<hex>`` of everything so far (the digester stays usable)."""
    def hexdigest(self) -> str: ...
    @property
    def size(self) -> int: ...
    def state(self) -> bytes: ...
    @staticmethod
    def from_state(state: bytes) -> Digester: ...

def parse_digest(s: str) -> str:
    """Validate a ``sha256:<hex>`` digest; raises InvalidArgument naming what is wrong."""

def sha256_bytes(data: bytes | bytearray | memoryview) -> str: ...
def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """``(digest, size)`` of a file."""

@final
class IngestWriter:
    """A resumable, verifying writer for one ingest ref under a content store root.

    Opening resumes an existing ingest (at its current offset) and takes an exclusive lock
    that other processes see; a second writer for the same ref gets Unavailable.
    """

    def __new__(
        cls,
        root: str | os.PathLike[str],
        reference: str,
        total: int | None = None,
        expected: str | None = None,
    ) -> IngestWriter: ...
    @property
    def reference(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def total(self) -> int | None: ...
    @property
    def started_at(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def digest(self) -> str: ...
    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def write_from_fd(self, fd: int, limit: int | None = None) -> int: ...
    def truncate(self, size: int) -> None: ...
    def commit(self, size: int = 0, expected: str | None = None) -> str:
        """Verify and store; FailedPrecondition on a mismatch (the ingest is kept),
        AlreadyExists if the blob exists (the ingest is removed)."""
    def close(self) -> None: ...
    def __enter__(self) -> IngestWriter: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

def errno_kind(errno: int) -> str:
    """The errdefs kind (``"not found"``, ``"resource exhausted"``, ...) of an OS error number,
    from the one table in the Rust core; ``"unknown"`` for an errno it does not list."""

def errno_kinds() -> list[tuple[int, str]]:
    """The whole errno table, as ``(errno, kind)`` pairs."""

def abort_ingest(root: str | os.PathLike[str], reference: str) -> None: ...
def ingest_in_use(path: str | os.PathLike[str]) -> bool: ...
def ingest_dir(root: str | os.PathLike[str], reference: str) -> Path: ...
def blob_path(root: str | os.PathLike[str], digest: str) -> Path: ...

# mounts (rust/ctrstore-py/src/mount.rs); every call runs without the GIL

@final
class MountInfo:
    """One line of ``/proc/self/mountinfo``; octal escapes in paths, source and type decoded."""

    @property
    def id(self) -> int: ...
    @property
    def parent(self) -> int: ...
    @property
    def major(self) -> int: ...
    @property
    def minor(self) -> int: ...
    @property
    def root(self) -> Path: ...
    @property
    def mount_point(self) -> Path: ...
    @property
    def options(self) -> str:
        """Per-mount options as printed (``rw,nosuid,relatime``)."""
    @property
    def optional(self) -> list[str]:
        """Optional fields (``shared:1``, ``master:2``)."""
    @property
    def fstype(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def super_options(self) -> str: ...

def mount(kind: str, source: str, options: Sequence[str], target: str | os.PathLike[str]) -> None:
    """mount(2) as containerd does: flags from fstab-style options, a remount for a read-only
    bind, overlay lowerdirs made relative when the options would not fit in a page.
    Unimplemented for an unknown file system type."""

def unmount(target: str | os.PathLike[str], lazy: bool = False, recursive: bool = False) -> None:
    """umount2(2), retrying EBUSY; a target that is not a mount point is fine. ``recursive``
    unmounts everything at or below target, deepest first; ``lazy`` is MNT_DETACH."""

def unmount_all(target: str | os.PathLike[str], lazy: bool = False) -> None:
    """Unmount until target is no longer a mount point; a missing target is fine."""

def mountinfo() -> list[MountInfo]:
    """This process's mounts, parents first."""

def apply_layer_fd(
    target: str | os.PathLike[str],
    fd: int,
    whiteouts: str = "overlay",
    parents: list[str] = ...,
    no_same_owner: bool = False,
    userxattr: bool = False,
) -> tuple[str, str, int, int, int]:
    """Apply the layer read from ``fd`` onto ``target``: ``(diff_id, compression,
    compressed_bytes, uncompressed_bytes, entries)``."""

def apply_layer_path(
    target: str | os.PathLike[str],
    path: str | os.PathLike[str],
    whiteouts: str = "overlay",
    parents: list[str] = ...,
    no_same_owner: bool = False,
    userxattr: bool = False,
) -> tuple[str, str, int, int, int]: ...
