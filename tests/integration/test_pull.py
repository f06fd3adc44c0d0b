"""The pull flow (fetch, verify, label, unpack, name) against a blob source we control: an OCI
layout on disk, optionally serving wrong or truncated bytes. The real registry is exercised
in test_registry_pull.py."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import IO

import pytest

from ctrstore import Client, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ctrstore.client.pull import Puller
from ctrstore.content import Descriptor
from ctrstore.images.archive import export_images
from ctrstore.images.build import ImageSpec, build_image, tar_from_entries
from ctrstore.images.pull import Status
from tests.support.images import BASE, TOP, UPPER

pytestmark = pytest.mark.root


class LayoutFetcher:
    """Serves blobs from an OCI layout directory; can corrupt or cut one blob."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.corrupt: str | None = None
        self.truncate: str | None = None
        self.requests: list[tuple[str, int]] = []

    def fetch(self, desc: Descriptor, offset: int = 0) -> tuple[IO[bytes], int]:
        self.requests.append((desc.digest, offset))
        data = (self.layout / "blobs" / "sha256" / desc.digest.split(":")[1]).read_bytes()
        if desc.digest == self.corrupt:
            data = bytes(b ^ 0xFF for b in data)
        if desc.digest == self.truncate:
            data = data[: len(data) // 2]
        return io.BytesIO(data[offset:]), offset


def source(tmp_path: Path) -> tuple[LayoutFetcher, Descriptor, list[Descriptor]]:
    """Build an image in a scratch store and lay it out on disk, as a registry would hold it."""
    scratch = Client(root=tmp_path / "scratch", state=tmp_path / "scratch-state")
    layers = [tar_from_entries(BASE), tar_from_entries(UPPER), tar_from_entries(TOP)]
    img = build_image(scratch.content, scratch.images, "src:1", layers, ImageSpec())
    buf = io.BytesIO()
    export_images(scratch.content, [img], buf)
    layout = tmp_path / "layout"
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        tf.extractall(layout, filter="tar")
    from ctrstore.images import manifest_for

    _, manifest = manifest_for(scratch.content, img.target)
    layer_descs = [Descriptor.from_json(x) for x in manifest["layers"]]
    scratch.close()
    return LayoutFetcher(layout), img.target, layer_descs


def test_pull_fetches_labels_unpacks_and_names(client: Client, tmp_path: Path) -> None:
    fetcher, root, _ = source(tmp_path)
    seen: list[Status] = []
    result = Puller(
        client,
        fetcher,
        progress=seen.append,
        source_labels={"containerd.io/distribution.source.example.com": "src"},
    ).pull("example.com/src:1", root)
    assert result.image.target.digest == root.digest
    assert len(result.fetched) == 6
    assert result.unpacked is not None and len(result.unpacked.applied) == 3
    states = {s.key.split("-")[0] for s in seen if s.state == "done"}
    assert states == {"index", "manifest", "config", "layer"}
    labels = {i.digest: i.labels for i in client.content.walk()}
    assert labels[root.digest]["containerd.io/gc.ref.content.m.0"]
    assert all(lb["containerd.io/distribution.source.example.com"] == "src" for lb in labels.values())
    assert client.check("example.com/src:1").unpacked
    assert client.gc().empty, "everything pulled is referenced"
    # A second pull fetches and unpacks nothing.
    fetcher.requests.clear()
    again = Puller(client, fetcher).pull("example.com/src:1", root)
    assert again.fetched == [] and fetcher.requests == []
    assert again.unpacked is not None and not again.unpacked.applied


def test_wrong_bytes_commit_nothing_then_pull_succeeds(client: Client, tmp_path: Path) -> None:
    fetcher, root, layers = source(tmp_path)
    fetcher.corrupt = layers[1].digest
    with pytest.raises(FailedPrecondition, match=f"layer-{layers[1].digest}"):
        Puller(client, fetcher).pull("x:1", root)
    assert not client.content.exists(layers[1].digest)
    assert not any(n.name.startswith("extract-") for n in client.snapshotter().walk())
    with pytest.raises(NotFound):
        client.images.get("x:1")
    fetcher.corrupt = None
    Puller(client, fetcher).pull("x:1", root)
    assert client.check("x:1").complete


def test_truncated_body_resumes_with_a_range(client: Client, tmp_path: Path) -> None:
    fetcher, root, layers = source(tmp_path)
    fetcher.truncate = layers[0].digest
    with pytest.raises(Unavailable, match="pull again to resume"):
        Puller(client, fetcher).pull("x:1", root)
    st = {s.ref: s.offset for s in client.content.list_statuses()}
    assert st[f"layer-{layers[0].digest}"] == layers[0].size // 2
    fetcher.truncate = None
    fetcher.requests.clear()
    Puller(client, fetcher).pull("x:1", root)
    assert (layers[0].digest, layers[0].size // 2) in fetcher.requests
    assert client.check("x:1").unpacked


def test_unknown_media_type_is_refused(client: Client, tmp_path: Path) -> None:
    fetcher, root, _ = source(tmp_path)
    weird = Descriptor("application/x-something", root.digest, root.size)
    with pytest.raises(InvalidArgument, match="unknown media type"):
        Puller(client, fetcher).pull("x:1", weird)
