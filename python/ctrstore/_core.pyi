"""Type stubs for ``ctrstore._core``, the PyO3 module built from ``rust/ctrstore-py``.

Every function raises ``ctrstore.errdefs`` exceptions. Long work (hashing, copying) runs with
the GIL released.
"""

import os
from pathlib import Path
from types import TracebackType
from typing import final

__all__ = [
    "Digester",
    "IngestWriter",
    "__version__",
    "abort_ingest",
    "blob_path",
    "ingest_dir",
    "ingest_in_use",
    "parse_digest",
    "sha256_bytes",
    "sha256_file",
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

def abort_ingest(root: str | os.PathLike[str], reference: str) -> None: ...
def ingest_in_use(path: str | os.PathLike[str]) -> bool: ...
def ingest_dir(root: str | os.PathLike[str], reference: str) -> Path: ...
def blob_path(root: str | os.PathLike[str], digest: str) -> Path: ...
