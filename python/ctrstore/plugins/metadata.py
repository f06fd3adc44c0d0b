"""``io.containerd.metadata.v1.sqlite``: meta.db, wrapping content and snapshotters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ctrstore.content.local import LocalStore
from ctrstore.errdefs import InvalidArgument
from ctrstore.metadata import DB, Metadata
from ctrstore.metadata.check import refuse_if_lost
from ctrstore.plugin import CONTENT, METADATA, SNAPSHOT, InitContext, Registration, register


@dataclass
class MetadataConfig:
    content_sharing_policy: str = "shared"
    """``shared``: a blob on disk is reused by any namespace that asks for it; ``isolated``:
    only blobs of namespaces labelled ``containerd.io/namespace.shareable=true`` are."""
    ingest_expiry_seconds: int = 24 * 3600
    """How long gc keeps an ingest (a partial download) after it was last opened, inside a
    lease or not: a killed pull resumes within this time, even after gc freed its lease."""


def _init(ic: InitContext) -> Metadata:
    cfg: MetadataConfig = ic.config
    if cfg.content_sharing_policy not in ("shared", "isolated"):
        raise InvalidArgument(
            f"content_sharing_policy must be shared or isolated, not {cfg.content_sharing_policy!r}"
        )
    if cfg.ingest_expiry_seconds < 0:
        raise InvalidArgument(f"ingest_expiry_seconds must not be negative, not {cfg.ingest_expiry_seconds}")
    content = ic.get_single(CONTENT, LocalStore)
    snapshotters = {name: sn for name, sn in ic.get_by_type(SNAPSHOT).items() if hasattr(sn, "gc_cleanup")}
    path = ic.root / "meta.db"
    refuse_if_lost(path, content, snapshotters)
    db = DB(path)
    policy = "shared" if cfg.content_sharing_policy == "shared" else "isolated"
    return Metadata(
        db,
        content,
        snapshotters,
        policy=policy,  # type: ignore[arg-type]
        ingest_expiry=timedelta(seconds=cfg.ingest_expiry_seconds),
    )


register(Registration(METADATA, "sqlite", _init, requires=(CONTENT, SNAPSHOT), config=MetadataConfig()))
