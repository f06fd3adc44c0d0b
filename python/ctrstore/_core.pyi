"""Type stubs for ``ctrstore._core``, the PyO3 module built from ``rust/ctrstore-py``.

Every function raises ``ctrstore.errdefs`` exceptions. Long work (hashing, copying) runs with
the GIL released.
"""

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import final

__all__ = [
    "ApplyStats",
    "BlobInfo",
    "DiffStats",
    "Digester",
    "IngestEntry",
    "IngestStatus",
    "apply_layer_fd",
    "apply_layer_path",
    "apply_layer_watch",
    "IngestWatch",
    "IngestWriter",
    "LayerDecoder",
    "MountInfo",
    "ROOTLESS_OWNER_XATTR",
    "__version__",
    "abort_ingest",
    "blob_info",
    "blob_path",
    "create_content_layout",
    "delete_blob",
    "errno_kind",
    "errno_kinds",
    "ingest_dir",
    "ingest_in_use",
    "ingest_status",
    "list_ingests",
    "mount",
    "mountinfo",
    "open_in_root",
    "parse_digest",
    "remove_ingest",
    "rootless_owner",
    "sha256_bytes",
    "sha256_file",
    "unmount",
    "unmount_all",
    "walk_blobs",
    "whiteout_path",
    "write_diff",
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
    def watch(self) -> IngestWatch:
        """A handle for reading this ingest's bytes back while they are written."""
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

@final
class IngestWatch:
    """An ingest being written, whose bytes can be read back as they arrive (from the first
    byte). A verified commit ends the stream; a close, a truncation, a failed commit or
    ``cancel`` breaks it off, and its readers then fail."""

    @property
    def reference(self) -> str: ...
    @property
    def written(self) -> int:
        """Bytes written so far."""
    @property
    def read(self) -> int:
        """Bytes read by the furthest reader."""
    @property
    def readers(self) -> int:
        """Readers following the ingest now."""
    @property
    def waiting(self) -> int:
        """Readers that have read everything written and wait for more."""
    @property
    def ended(self) -> bool:
        """Whether the writer is done (committed, or broken off)."""
    def cancel(self, reason: str) -> None:
        """Make the readers fail with ``reason`` (Aborted); the writer goes on."""

def errno_kind(errno: int) -> str:
    """The errdefs kind (``"not found"``, ``"resource exhausted"``, ...) of an OS error number,
    from the one table in the Rust core; ``"unknown"`` for an errno it does not list."""

def errno_kinds() -> list[tuple[int, str]]:
    """The whole errno table, as ``(errno, kind)`` pairs."""

def abort_ingest(root: str | os.PathLike[str], reference: str) -> None: ...
def ingest_in_use(path: str | os.PathLike[str]) -> bool: ...
def ingest_dir(root: str | os.PathLike[str], reference: str) -> Path: ...
def blob_path(root: str | os.PathLike[str], digest: str) -> Path: ...

# the store's files, read and removed only here (rust/ctrstore-core/src/content.rs)

def create_content_layout(root: str | os.PathLike[str]) -> None:
    """Make ``blobs/sha256/`` and ``ingest/`` under a content store root if missing."""

@final
class BlobInfo:
    """A committed blob: digest, size, and when it was committed (the file's mtime, UTC)."""

    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def modified(self) -> datetime: ...

def blob_info(root: str | os.PathLike[str], digest: str) -> BlobInfo:
    """NotFound if the store does not hold the blob."""

def walk_blobs(root: str | os.PathLike[str]) -> list[BlobInfo]:
    """Every blob under ``blobs/sha256/``, by digest (other names are passed over)."""

def delete_blob(root: str | os.PathLike[str], digest: str) -> None:
    """Remove the blob's file; NotFound if there is none."""

@final
class IngestStatus:
    """What an ingest directory's files say: ref, bytes so far, expected size, started, and
    last updated (the later of ``updatedat`` and the data's mtime); times in UTC."""

    @property
    def reference(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def total(self) -> int | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...

@final
class IngestEntry:
    """One directory (or stray file) under ``ingest/``."""

    @property
    def name(self) -> str:
        """The directory's name: what ``remove_ingest`` takes."""
    @property
    def path(self) -> Path: ...
    @property
    def reference(self) -> str | None:
        """Its ``ref`` file's text; None if it has none."""
    @property
    def status(self) -> IngestStatus | None:
        """None unless ``ref``, ``data`` and a readable ``startedat`` are all there."""
    @property
    def in_use(self) -> bool | None:
        """Whether a writer holds it; None if the locks were not probed."""

def ingest_status(root: str | os.PathLike[str], reference: str) -> IngestStatus:
    """NotFound if there is no (readable) ingest for the ref."""

def list_ingests(root: str | os.PathLike[str], probe_locks: bool = True) -> list[IngestEntry]:
    """Everything under ``ingest/``, by name. Probing takes each lock for a moment (a writer
    opening it right then gets Unavailable and retries): leave it off for user listings."""

def remove_ingest(root: str | os.PathLike[str], name: str) -> bool:
    """Remove ``ingest/<name>`` unless a writer holds it: True if it is gone, False if held."""

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

# layers (rust/ctrstore-py/src/archive.rs)

@final
class ApplyStats:
    """What applying a layer saw."""

    @property
    def diff_id(self) -> str:
        """sha256 of the whole uncompressed stream."""
    @property
    def compression(self) -> str:
        """``"gzip"``, ``"zstd"`` or ``"none"``."""
    @property
    def compressed_bytes(self) -> int: ...
    @property
    def uncompressed_bytes(self) -> int: ...
    @property
    def entries(self) -> int: ...

def apply_layer_fd(
    target: str | os.PathLike[str],
    fd: int,
    whiteouts: str = "overlay",
    parents: list[str] = ...,
    no_same_owner: bool = False,
    userxattr: bool = False,
    owner_xattr: bool = False,
) -> ApplyStats:
    """Apply the layer read from ``fd`` (left open) onto ``target``."""

def apply_layer_path(
    target: str | os.PathLike[str],
    path: str | os.PathLike[str],
    whiteouts: str = "overlay",
    parents: list[str] = ...,
    no_same_owner: bool = False,
    userxattr: bool = False,
    owner_xattr: bool = False,
) -> ApplyStats: ...
def apply_layer_watch(
    target: str | os.PathLike[str],
    watch: IngestWatch,
    whiteouts: str = "overlay",
    parents: list[str] = ...,
    no_same_owner: bool = False,
    userxattr: bool = False,
    owner_xattr: bool = False,
) -> ApplyStats:
    """Apply an ingest's bytes onto ``target`` as they are written; returns once a verified
    commit ends the stream, fails if it breaks off."""

@final
class LayerDecoder:
    """A layer file decoded (and hashed) ahead of its apply, on a thread of its own, into a
    bounded queue (64 MiB). ``apply`` creates the entries (once); ``close`` stops decoding."""

    def __new__(cls, path: str | os.PathLike[str]) -> LayerDecoder: ...
    @property
    def path(self) -> Path: ...
    @property
    def applied(self) -> bool:
        """Whether ``apply`` was called."""
    def apply(
        self,
        target: str | os.PathLike[str],
        whiteouts: str = "overlay",
        parents: list[str] = ...,
        no_same_owner: bool = False,
        userxattr: bool = False,
        owner_xattr: bool = False,
    ) -> ApplyStats: ...
    def close(self) -> None: ...

def open_in_root(root: str | os.PathLike[str], path: str | os.PathLike[str], flags: int = ...) -> int:
    """Open ``path`` inside ``root`` as if ``root`` were ``/`` (symlinks followed inside it,
    every component opened with ``O_NOFOLLOW``). Returns a new descriptor the caller closes.
    The error's ``errno`` says why it failed: ENOENT, ENOTDIR, ELOOP (too many symlinks, or
    one swapped in meanwhile)."""

@final
class DiffStats:
    """What writing a layer produced."""

    @property
    def digest(self) -> str:
        """sha256 of what was written (the compressed layer): its descriptor's digest."""
    @property
    def size(self) -> int:
        """Bytes written."""
    @property
    def diff_id(self) -> str:
        """sha256 of the uncompressed tar."""
    @property
    def uncompressed_bytes(self) -> int: ...
    @property
    def compression(self) -> str:
        """``"gzip"``, ``"zstd"`` or ``"none"``."""
    @property
    def entries(self) -> int: ...

def write_diff(
    out: IngestWriter | int,
    upper: str | os.PathLike[str],
    lower: str | os.PathLike[str] | None = None,
    compression: str = "gzip",
    owner_xattr: bool = False,
) -> DiffStats:
    """Write the layer of a snapshot's changes into ``out`` (an ``IngestWriter``, or a file
    descriptor left open): with ``lower``, tree ``upper`` compared with it; without, the overlay
    upper dir ``upper`` (0:0 character devices are whiteouts, opaque xattrs opaque dirs).
    Compressed and hashed (digest and diffID) in one streaming pass, without the GIL. With
    ``owner_xattr`` (single-id mode) owners come from ``user.rootlesscontainers``, left out."""

ROOTLESS_OWNER_XATTR: str
"""``user.rootlesscontainers``: where a single-id store keeps a file's image owner."""

def rootless_owner(value: bytes, uid: int, gid: int) -> tuple[int, int]:
    """The image owner a single-id store's file records in its ``user.rootlesscontainers``
    ``value`` (``uid``/``gid``: the file's own, where the value says "no change"); a malformed
    value is InvalidArgument."""

def whiteout_path(path: str, opaque: bool = False) -> str:
    """The layer entry that deletes ``path`` (``dir/.wh.name``), or with ``opaque`` the one that
    makes directory ``path`` opaque (``path/.wh..wh..opq``)."""
