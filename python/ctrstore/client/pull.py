"""Pulling an image, as containerd's ``client.Pull``: once ``Client.pull`` has resolved the
reference, a ``Puller`` holds a lease (so a gc running at the same time cannot take
half-pulled content), fetches the index, manifest, config and layers
(``ctrstore.images.pull.Download``), unpacks each layer into its snapshot while it downloads
(``ctrstore.unpack``, ``ctrstore.stream``), and names the image.

A second pull of the same image finds everything present and fetches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ctrstore.content import Descriptor
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform, host
from ctrstore.images.pull import Download, Fetcher, Status, ref_key
from ctrstore.metadata.images import Image
from ctrstore.unpack import Unpacker, UnpackResult

if TYPE_CHECKING:
    from ctrstore.client.client import Client

__all__ = ["PullResult", "Puller"]


@dataclass
class PullResult:
    image: Image
    fetched: list[str] = field(default_factory=list)
    """Blobs downloaded (digests); empty on a pull that found everything present."""
    unpacked: UnpackResult | None = None
    sources: dict[str, str] = field(default_factory=dict)
    """Where each fetched blob came from (digest -> the ``source`` of its download)."""


class Puller:
    """Pulls images from ``fetcher`` into ``client``'s namespace."""

    def __init__(
        self,
        client: Client,
        fetcher: Fetcher,
        *,
        source_labels: dict[str, str] | None = None,
        max_concurrent_downloads: int = 3,
        progress: Callable[[Status], None] | None = None,
    ) -> None:
        self.client = client
        self.fetcher = fetcher
        self.source_labels = dict(source_labels or {})
        self.workers = max_concurrent_downloads
        self.progress = progress or (lambda s: None)

    def pull(
        self,
        name: str,
        root: Descriptor,
        *,
        platform: Platform | None = None,
        all_platforms: bool = False,
        unpack: bool = True,
        snapshotter: str | None = None,
    ) -> PullResult:
        """Fetch the image ``root`` (the best match for ``platform``, or every platform),
        unpack its first manifest, and name it ``name``."""
        client = self.client
        mt.check_supported(root.media_type, f"{name}: {ref_key(root)}")
        want = platform or host()
        result_unpack: UnpackResult | None = None
        with client.lease():
            content = client.content  # taken inside the lease: it writes under it
            download = Download(
                content,
                self.fetcher,
                source_labels=self.source_labels,
                progress=self.progress,
                max_layers=client.config.max_layers,
            )

            def unpacker() -> Unpacker:
                sn = client.snapshotter(snapshotter)
                # As many layers are applied at once (overlay) as are downloaded: each is followed.
                return Unpacker(content, sn, tmp_dir=client.root / "tmpmounts", workers=max(2, self.workers))

            with (
                download.tidy_after_full_disk(),
                ThreadPoolExecutor(self.workers, thread_name_prefix="ctrstore-fetch") as pool,
            ):
                for i, mdesc in enumerate(download.manifests(root, want, all_platforms)):
                    r = download.manifest(mdesc, pool, unpacker if unpack and i == 0 else None)
                    result_unpack = result_unpack or r
            image = client.images.upsert(Image(name, Descriptor(root.media_type, root.digest, root.size)))
        return PullResult(image, list(download.fetched), result_unpack, dict(download.sources))
