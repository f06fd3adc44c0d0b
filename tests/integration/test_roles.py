"""The one place of each piece of logic that several callers share (issue #10): the image
store's ``upsert``, the content store's ``ingest`` (tolerate what exists, label it), ``images.
resolve`` (image -> manifest, config, layers) and ``update(obj, *fieldpaths)``."""

from __future__ import annotations

from ctrstore import Client, Descriptor, Image, sha256_bytes
from ctrstore.images import mediatypes as mt
from ctrstore.images import resolve
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _target(client: Client, data: bytes) -> Descriptor:
    digest = client.content.ingest(f"m-{len(data)}", data)
    return Descriptor(MANIFEST, digest, len(data))


def test_upsert_creates_then_moves_the_target_and_keeps_the_labels(client: Client) -> None:
    first, second = _target(client, b"{}"), _target(client, b"{ }")
    made = client.images.upsert(Image("example.com/a:1", first, {"k": "v"}))
    assert made.target.digest == first.digest and made.labels == {"k": "v"}
    moved = client.images.upsert(Image("example.com/a:1", second, {"other": "x"}))
    assert moved.target.digest == second.digest
    assert moved.labels == {"k": "v"}, "upsert of an existing name changes its target only"
    assert moved.created_at == made.created_at
    assert [i.name for i in client.images.list()] == ["example.com/a:1"]


def test_ingest_labels_a_blob_committed_meanwhile(client: Client) -> None:
    """``ContentStore.ingest`` is the one 'ingest, tolerate exists, label': when another
    writer commits the same blob while ours runs, ours still labels it."""
    data = b"the same bytes twice"
    digest = sha256_bytes(data)

    def race(offset: int) -> None:
        if not client.content.exists(digest):
            client.content.ingest("other", data)

    got = client.content.ingest("mine", data, expected=digest, labels={"mine": "yes"}, progress=race)
    assert got == digest
    assert client.content.info(digest).labels == {"mine": "yes"}
    # And when the namespace held it before the ingest began:
    client.content.ingest("again", data, expected=digest, labels={"again": "yes"})
    assert client.content.info(digest).labels == {"mine": "yes", "again": "yes"}


def test_resolve_goes_from_an_image_to_its_manifest_config_and_layers(client: Client) -> None:
    layers = [tar_from_entries([Entry("a", data=b"1")]), tar_from_entries([Entry("b", data=b"2")])]
    img = build_image(client.content, client.images, "example.com/r:1", layers, ImageSpec())
    assert mt.is_index(img.target.media_type)
    r = resolve(client.content, img.target)
    assert mt.is_manifest(r.manifest.media_type)
    assert r.config.digest == r.doc["config"]["digest"]
    assert [d.digest for d in r.layers] == [x["digest"] for x in r.doc["layers"]]
    assert len(r.layers) == 2 and all(client.content.exists(d.digest) for d in (r.config, *r.layers))
    assert client.resolve("example.com/r:1") == r
