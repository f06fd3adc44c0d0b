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
