"""Content: immutable, content-addressed blobs, and the ingests that write them.

``ctrstore.content.local.LocalStore`` is the on-disk store shared by every namespace
(``<root>/io.containerd.content.v1.content``); ``ctrstore.metadata.content.ContentStore`` is
the namespaced view callers use, which records ownership and labels in meta.db.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Descriptor", "Info", "Status"]


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
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        return cls(
            media_type=str(d.get("mediaType", "")),
            digest=str(d["digest"]),
            size=int(d["size"]),
            annotations=dict(d.get("annotations") or {}),
            urls=list(d.get("urls") or []),
            platform=d.get("platform"),
        )


@dataclass(frozen=True)
class Info:
    """A committed blob as one namespace sees it."""

    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
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
