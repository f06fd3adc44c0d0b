"""Content: immutable, content-addressed blobs, and the ingests that write them.

``ctrstore.content.local.LocalStore`` is the on-disk store shared by every namespace
(``<root>/io.containerd.content.v1.content``); ``ctrstore.metadata.content.ContentStore`` is
the namespaced view callers use, which records ownership and labels in meta.db.

The roles a caller takes instead of a whole store are the Protocols here, as containerd's
``core/content`` interfaces: a ``Provider`` reads blobs, an ``Ingester`` writes them (through
a ``Writer``), a ``Manager`` labels and deletes them; a ``Store`` is all three. Code below the
client (``ctrstore.images``, ``ctrstore.unpack``, ``ctrstore.runtime``) is typed with these,
so that it depends on what it does with content, not on meta.db.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

if TYPE_CHECKING:
    from ctrstore._core import DiffStats, IngestWatch

__all__ = ["Descriptor", "Info", "Ingester", "Manager", "Provider", "Status", "Store", "Writer"]


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)
    platform: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def from_json(cls, d: object, what: str = "descriptor") -> Descriptor:
        """A descriptor from its JSON form, every field type-checked: ``digest`` must be a
        valid ``sha256:<hex>`` digest (it becomes a file name), ``size`` an integer in
        ``[0, 2**63-1]``, ``annotations`` strings, ``urls`` a list of strings, ``platform``
        an object of strings. Anything else is InvalidArgument naming ``what`` and the field."""
        from ctrstore import _core
        from ctrstore.jsondoc import describe_type, fail, want_int, want_str, want_str_list, want_str_map

        if not isinstance(d, dict):
            fail(what, f"must be an object, not {describe_type(d)}")
        digest = want_str(d, "digest", what, required=True)
        assert digest is not None
        if len(digest) > 200:
            fail(what, f"digest is {len(digest)} characters long, not a digest")
        try:
            _core.parse_digest(digest)
        except ValueError as e:
            fail(what, f"digest: {e}")
        size = want_int(d, "size", what, required=True)
        assert size is not None
        return cls(
            media_type=want_str(d, "mediaType", what) or "",
            digest=digest,
            size=size,
            annotations=dict(want_str_map(d, "annotations", what) or {}),
            urls=list(want_str_list(d, "urls", what) or []),
            platform=_platform(d, what),
        )


def _platform(d: dict[str, Any], what: str) -> dict[str, Any] | None:
    """The descriptor's ``platform`` object, its fields type-checked (OCI image-index spec)."""
    from ctrstore.jsondoc import want_object, want_str, want_str_list

    p = want_object(d, "platform", what)
    if p is None:
        return None
    for key in ("architecture", "os", "os.version", "variant"):
        want_str(p, key, what, f"platform.{key}")
    for key in ("os.features", "features"):
        want_str_list(p, key, what, f"platform.{key}")
    return dict(p)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Info:
    """A committed blob as one namespace sees it. To change its labels, ``Info(digest,
    labels=...)`` is enough: ``update`` reads only the digest and the labels."""

    digest: str
    size: int = 0
    created_at: datetime = _EPOCH
    updated_at: datetime = _EPOCH
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """An ingest in progress."""

    ref: str
    offset: int
    total: int | None
    started_at: datetime
    updated_at: datetime
    expected: str | None = None


class Provider(Protocol):
    """Reads the blobs of one namespace (containerd's ``content.Provider`` with ``Info``)."""

    @property
    def namespace(self) -> str:
        """The namespace whose blobs these are (named in error messages)."""
        ...

    def info(self, digest: str) -> Info: ...
    def exists(self, digest: str) -> bool: ...
    def open(self, digest: str) -> BinaryIO: ...
    def read_bytes(self, digest: str) -> bytes: ...
    def path(self, digest: str) -> str:
        """Where the blob's bytes are on disk (read-only)."""
        ...


class Writer(Protocol):
    """An open ingest (containerd's ``content.Writer``): resumable, verified at commit."""

    @property
    def offset(self) -> int: ...
    @property
    def complete(self) -> bool:
        """True when the blob is already stored and ``commit`` only records it."""
        ...

    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def truncate(self, size: int) -> None: ...
    def write_diff(
        self,
        upper: str | os.PathLike[str],
        *,
        lower: str | os.PathLike[str] | None = None,
        compression: Literal["gzip", "zstd", "none"] = "gzip",
    ) -> DiffStats:
        """Write the layer of a snapshot's changes (an overlay upper dir, or ``upper``
        compared with ``lower``) into this ingest; see ``ctrstore.archive.write_diff``."""
        ...

    def watch(self) -> IngestWatch:
        """A handle for reading the ingest's bytes back while they are written (a pull's
        unpack follows its layer downloads: ``ctrstore.stream``)."""
        ...

    def commit(
        self, size: int = 0, expected: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> Writer: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Ingester(Protocol):
    """Writes blobs (containerd's ``content.Ingester``); ``ingest`` is the whole-blob form."""

    def writer(
        self, ref: str, *, total: int | None = None, expected: str | None = None, wait: float = 0.0
    ) -> Writer: ...
    def ingest(
        self,
        ref: str,
        source: IO[bytes] | bytes,
        *,
        expected: str | None = None,
        size: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Write a whole blob, resuming ``ref``; one already stored counts (and is labelled)."""
        ...

    def abort(self, ref: str) -> None: ...
    def settle_commit(
        self, ref: str, digest: str, size: int, labels: Mapping[str, str] | None = None
    ) -> None:
        """Tidy after ingest ``ref``'s commit of ``digest`` failed on a full disk, once there
        may be room again: record the verified blob, or drop it."""
        ...


class Manager(Protocol):
    """Labels, lists and deletes blobs (containerd's ``content.Manager``)."""

    def info(self, digest: str) -> Info: ...
    def update(self, info: Info, *fieldpaths: str) -> Info: ...
    def set_labels(self, digest: str, changes: Mapping[str, str]) -> Info: ...
    def walk(self, *filters: str) -> Iterator[Info]: ...
    def delete(self, digest: str) -> None: ...


class Store(Provider, Ingester, Manager, Protocol):
    """All of a namespace's content: what pull, import, unpack and commit write through."""
