"""``io.containerd.metadata.v1.sqlite``: meta.db, wrapping content and snapshotters."""

from __future__ import annotations

from dataclasses import dataclass

from ctrstore.content.local import LocalStore
from ctrstore.errdefs import InvalidArgument
from ctrstore.metadata import DB, Metadata
from ctrstore.plugin import CONTENT, METADATA, SNAPSHOT, InitContext, Registration, register


@dataclass
class MetadataConfig:
    content_sharing_policy: str = "shared"
    """``shared``: a blob on disk is reused by any namespace that asks for it; ``isolated``:
    only blobs of namespaces labelled ``containerd.io/namespace.shareable=true`` are."""


def _init(ic: InitContext) -> Metadata:
    cfg: MetadataConfig = ic.config
    if cfg.content_sharing_policy not in ("shared", "isolated"):
        raise InvalidArgument(
            f"content_sharing_policy must be shared or isolated, not {cfg.content_sharing_policy!r}"
        )
    content = ic.get_single(CONTENT, LocalStore)
    snapshotters = {name: sn for name, sn in ic.get_by_type(SNAPSHOT).items() if hasattr(sn, "gc_cleanup")}
    db = DB(ic.root / "meta.db")
    policy = "shared" if cfg.content_sharing_policy == "shared" else "isolated"
    return Metadata(db, content, snapshotters, policy=policy)  # type: ignore[arg-type]


register(Registration(METADATA, "sqlite", _init, requires=(CONTENT, SNAPSHOT), config=MetadataConfig()))
