"""``images import`` of junk, truncated and hostile archives: every case is one
``invalid argument`` line from the CLI, ``InvalidArgument`` from the API, and leaves no image
record, no snapshot, no ingest, and nothing outside the store."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctrstore import InvalidArgument, NotFound
from ctrstore.images import mediatypes as mt
from ctrstore.images.archive import import_images
from tests.support.cli import cli, one_line_error, store_client
from tests.support.crafted import (
    crafted_image,
    docker_members,
    dumps,
    files_outside,
    member,
    nested_indexes,
    nothing_committed,
    oci_members,
    sha,
    tar_bytes,
)

Build = Callable[[], bytes]


def _oci(**kw: object) -> Build:
    return lambda: tar_bytes(oci_members(crafted_image(**kw)))  # type: ignore[arg-type]


def _index_entry(**patch: object) -> Build:
    def build() -> bytes:
        c = crafted_image()
        entry = {**c.target, **patch, "annotations": {"io.containerd.image.name": "example.com/app:1"}}
        return tar_bytes(oci_members(c, index_doc={"schemaVersion": 2, "manifests": [entry]}))

    return build


def _index_bytes(data: bytes) -> Build:
    return lambda: tar_bytes(oci_members(crafted_image(), index_doc=data))


def _valid() -> bytes:
    return tar_bytes(oci_members(crafted_image()))


def _truncated() -> bytes:
    data = _valid()
    return data[: len(data) // 2 + 100]


def _truncated_gzip() -> bytes:
    data = gzip.compress(_valid())
    return data[: len(data) // 2]


def _with(*extra: tuple[tarfile.TarInfo, bytes], first: bool = False) -> Build:
    def build() -> bytes:
        base = oci_members(crafted_image())
        return tar_bytes([*extra, *base] if first else [*base, *extra])

    return build


def _index_link(**attrs: Any) -> Build:
    """index.json replaced by a link."""

    def build() -> bytes:
        base = [m for m in oci_members(crafted_image()) if m[0].name != "index.json"]
        return tar_bytes([member("index.json", **attrs), *base])

    return build


def _symlink_loop() -> bytes:
    base = [m for m in oci_members(crafted_image()) if m[0].name != "index.json"]
    return tar_bytes(
        [
            member("index.json", type=tarfile.SYMTYPE, linkname="a"),
            member("a", type=tarfile.SYMTYPE, linkname="index.json"),
            *base,
        ]
    )


def _huge_member() -> bytes:
    """A member whose header claims a terabyte that is not there."""
    ti = tarfile.TarInfo("blobs/sha256/" + "a" * 64)
    ti.size = 1 << 40
    data = tar_bytes(oci_members(crafted_image()))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        last = tf.getmembers()[-1]
    end = last.offset_data + -(-last.size // 512) * 512  # the end of the last member's data
    return data[:end] + ti.tobuf(tarfile.PAX_FORMAT) + b"\0" * 512


def _huge_json() -> bytes:
    return tar_bytes([member("index.json", b" " * (5 << 20) + b"{}")])


def _too_many_layers() -> bytes:
    return tar_bytes(oci_members(crafted_image(n_layers=3)))


def _nested() -> bytes:
    return tar_bytes(oci_members(nested_indexes(10)))


def _bad_name(name: str) -> Build:
    return lambda: tar_bytes(oci_members(crafted_image(), names=[name]))


def _second_entry_bad() -> bytes:
    c = crafted_image()
    good = {**c.target, "annotations": {"io.containerd.image.name": "example.com/good:1"}}
    bad = {**c.target, "size": "12", "annotations": {"io.containerd.image.name": "example.com/bad:1"}}
    return tar_bytes(oci_members(c, index_doc={"schemaVersion": 2, "manifests": [good, bad]}))


def _mismatch() -> bytes:
    c = crafted_image()
    layer = c.layers[0]
    members = oci_members(c)
    out = []
    for ti, data in members:
        if ti.name == f"blobs/sha256/{sha(layer)[7:]}":
            data = data[:-1] + bytes([data[-1] ^ 1])
        out.append((ti, data))
    return tar_bytes(out)


def _docker(manifest_json: object = None, **kw: object) -> Build:
    return lambda: tar_bytes(docker_members(crafted_image(**kw), manifest_json))  # type: ignore[arg-type]


def _docker_layer_link_outside() -> bytes:
    c = crafted_image()
    members = docker_members(c)
    members = [m for m in members if m[0].name != "0/layer.tar"]
    members.append(member("0/layer.tar", type=tarfile.SYMTYPE, linkname="../../../etc/passwd"))
    return tar_bytes(members)


CASES: dict[str, tuple[Build, str]] = {
    # junk and broken archives
    "junk": (lambda: b"this is not a tar archive\n" * 40, "not a tar archive"),
    "empty": (lambda: b"", "not a tar archive"),
    "truncated": (_truncated, "truncated"),
    "truncated-gzip": (_truncated_gzip, "truncated"),
    "huge-member": (_huge_member, "truncated"),
    "huge-json": (_huge_json, "more than a JSON document may have"),
    "no-index": (lambda: tar_bytes([member("hello", b"hi")]), "neither an OCI image layout"),
    # member names and kinds
    "absolute-name": (_with(member("/etc/cron.d/x", b"x")), "'/etc/cron.d/x' is absolute or has '..'"),
    "dotdot-name": (_with(member("../../x", b"x")), "'../../x' is absolute or has '..'"),
    "duplicate": (_with(member("index.json", b"{}")), "'index.json' appears more than once"),
    "device": (_with(member("dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)), "device or fifo"),
    "symlink-outside": (_index_link(type=tarfile.SYMTYPE, linkname="/etc/passwd"), "outside the archive"),
    "symlink-up": (_index_link(type=tarfile.SYMTYPE, linkname="../../etc/passwd"), "outside the archive"),
    "hardlink-outside": (_index_link(type=tarfile.LNKTYPE, linkname="../secret"), "outside the archive"),
    "symlink-loop": (_symlink_loop, "links in a row"),
    "link-to-nothing": (_index_link(type=tarfile.SYMTYPE, linkname="nothing"), "has no member 'nothing'"),
    # index.json
    "index-not-object": (_index_bytes(b"[1, 2]"), "index.json: must be a JSON object, not an array"),
    "index-not-utf8": (_index_bytes(b'{"manifests": "\xff"}'), "index.json: not UTF-8"),
    "index-utf16": (_index_bytes('{"manifests": []}'.encode("utf-16")), "index.json: not UTF-8"),
    "index-deep": (_index_bytes(b"[" * 100_000 + b"]" * 100_000), "nested more than 64 levels"),
    "index-unclosed": (_index_bytes(b"[" * 100_000), "nested more than 64 levels"),
    "index-nan": (_index_bytes(b'{"manifests": [], "x": NaN}'), "NaN is not a JSON number"),
    "index-surrogate": (_index_bytes(b'{"manifests": [], "x": "\\udc80"}'), "surrogate"),
    "index-huge-int": (_index_bytes(b'{"schemaVersion": ' + b"9" * 5000 + b"}"), "not valid JSON"),
    "manifests-not-list": (_index_bytes(b'{"manifests": {}}'), "manifests must be an array, not an object"),
    "digest-int": (_index_entry(digest=5), "manifests[0]: digest must be a string, not an integer"),
    "digest-traversal": (_index_entry(digest="sha256:../../../../etc/passwd"), "invalid digest"),
    "digest-sha512": (_index_entry(digest="sha512:" + "a" * 128), "invalid digest"),
    "size-string": (_index_entry(size="12"), "size must be an integer, not a string"),
    "size-float": (_index_entry(size=12.5), "size must be an integer, not a number"),
    "size-exponent": (_index_entry(size=1e3), "size must be an integer, not a number"),
    "size-bool": (_index_entry(size=True), "size must be an integer, not a boolean"),
    "size-negative": (_index_entry(size=-1), "size is -1, outside"),
    "size-overflow": (
        _index_entry(size=2**64),
        "size is 18446744073709551616, outside [0, 9223372036854775807]",
    ),
    "size-absurd": (_index_entry(size=10**40), "outside [0, 9223372036854775807]"),
    "mediatype-int": (_index_entry(mediaType=1), "mediaType must be a string"),
    "platform-string": (_index_entry(platform="linux/amd64"), "platform must be an object, not a string"),
    "platform-os-list": (_index_entry(platform={"os": ["linux"]}), "platform.os must be a string"),
    "urls-string": (_index_entry(urls="http://x"), "urls must be an array"),
    "annotation-int": (_index_bytes(b'{"manifests": [], "annotations": {"a": 1}}'), "annotations['a']"),
    # manifests and configs inside the archive
    "manifest-no-config": (_oci(manifest_patch={"config": None}), "config is missing"),
    "manifest-config-string": (_oci(manifest_patch={"config": "sha256:x"}), "config must be an object"),
    "manifest-layers-object": (_oci(manifest_patch={"layers": {}}), "layers must be an array"),
    "manifest-no-layers": (_oci(manifest_patch={"layers": None}), "layers is missing"),
    "manifest-version": (_oci(manifest_patch={"schemaVersion": "2"}), "schemaVersion must be an integer"),
    "manifest-is-index": (_oci(manifest_patch={"manifests": []}), "must not list manifests"),
    "layer-size-float": (_oci(layer_desc_patch={"size": 1.0}), "layers[0]: size must be an integer"),
    "manifest-not-json": (_oci(manifest_bytes=b"\x00\x01"), "not valid JSON"),
    "config-env-string": (_oci(config={"config": {"Env": "PATH=/bin"}}), "config.Env must be an array"),
    "config-cmd-ints": (_oci(config={"config": {"Cmd": [1]}}), "config.Cmd[0] must be a string"),
    "config-user-int": (_oci(config={"config": {"User": 0}}), "config.User must be a string"),
    "config-ports-list": (_oci(config={"config": {"ExposedPorts": ["80"]}}), "config.ExposedPorts must be"),
    "config-volumes-str": (_oci(config={"config": {"Volumes": "/data"}}), "config.Volumes must be an object"),
    "config-labels-int": (_oci(config={"config": {"Labels": {"a": 1}}}), "config.Labels['a']"),
    "config-nul-arg": (_oci(config={"config": {"Cmd": ["a\0b"]}}), "NUL"),
    "config-rootfs-list": (_oci(config={"rootfs": []}), "rootfs must be an object"),
    "config-diffid-bad": (_oci(config={"rootfs": {"type": "layers", "diff_ids": ["x"]}}), "diff_ids[0]"),
    "config-diffid-count": (_oci(config={"rootfs": {"type": "layers", "diff_ids": []}}), "1 layers but"),
    "config-not-utf8": (_oci(config_bytes=b'{"a": "\xfe"}'), "not UTF-8"),
    "config-deep": (_oci(config_bytes=b'{"a":' * 70 + b"1" + b"}" * 70), "nested more than 64 levels"),
    # limits
    "too-many-layers": (_too_many_layers, "3 layers is more than the 2 allowed"),
    "index-nesting": (_nested, "nested more than 8 levels"),
    # names must be references
    "name-newline": (_bad_name("example.com/app:1\nevil"), "not a valid reference"),
    "name-space": (_bad_name("example.com/my app:1"), "not a valid reference"),
    "name-escape": (_bad_name("example.com/app\x1b[31m:1"), "not a valid reference"),
    "name-dotdot": (_bad_name("example.com/a/../b:1"), "not a valid reference"),
    "name-upper": (_bad_name("example.com/App:1"), "must be lowercase"),
    "name-long": (_bad_name("example.com/" + "a" * 600), "at most 512"),
    "name-long-tag": (_bad_name("example.com/a:" + "t" * 200), "invalid tag"),
    # all or nothing
    "second-entry-bad": (_second_entry_bad, "manifests[1]: size must be an integer"),
    "blob-mismatch": (_mismatch, "does not match its digest"),
    # docker save archives
    "docker-not-list": (_docker({"Config": "x"}), "manifest.json: must be a JSON array, not an object"),
    "docker-entry-string": (_docker(["x"]), "manifest.json: [0] must be an object"),
    "docker-config-int": (_docker([{"Config": 1, "Layers": []}]), "[0].Config must be a string"),
    "docker-no-layers": (_docker([{"Config": "a.json"}]), "[0].Layers is missing"),
    "docker-layers-ints": (_docker([{"Config": "a.json", "Layers": [1]}]), "[0].Layers[0] must be a string"),
    "docker-missing-config": (
        _docker([{"Config": "nothere.json", "Layers": []}]),
        "has no member 'nothere.json'",
    ),
    "docker-config-dotdot": (_docker([{"Config": "../../etc/passwd", "Layers": []}]), "has no member"),
    "docker-repotag-bad": (
        _docker([{"Config": "x.json", "Layers": [], "RepoTags": ["bad name:1"]}]),
        "[0].RepoTags: invalid reference 'bad name:1'",
    ),
    "docker-repotags-string": (_docker([{"Config": "x", "Layers": [], "RepoTags": "a"}]), "RepoTags must be"),
    "docker-layer-link-outside": (_docker_layer_link_outside, "outside the archive"),
    "docker-env-string": (_docker(config={"config": {"Env": "A=1"}}), "config.Env must be an array"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_archive(tmp_path: Path, case: str) -> None:
    build, fragment = CASES[case]
    store = tmp_path / "store"
    store.mkdir()
    (store / "config.toml").write_text("max_layers = 2\n")
    archive = tmp_path / "image.tar"
    archive.write_bytes(build())
    before = files_outside(tmp_path, store)

    r = cli(store, "images", "import", str(archive))
    one_line_error(r, "invalid argument", fragment)

    client = store_client(store, config=str(store / "config.toml"))
    try:
        with pytest.raises(InvalidArgument, match="archive"):
            import_images(client.content, client.images, archive, max_layers=client.config.max_layers)
        nothing_committed(client)
        assert client.content.list_statuses() == [], "an ingest was left behind"
    finally:
        client.close()
    assert files_outside(tmp_path, store) == before


def test_links_inside_the_archive_are_followed(tmp_path: Path) -> None:
    """docker save's legacy layout links a layer.tar to another one: that is fine."""
    c = crafted_image(n_layers=2)
    members = docker_members(c)
    members = [m for m in members if m[0].name != "1/layer.tar"]
    members.append(member("1/layer.tar", type=tarfile.SYMTYPE, linkname="../other/layer.tar"))
    members.append(member("other/layer.tar", c.layers[1]))
    members.append(member("./hard.tar", type=tarfile.LNKTYPE, linkname="other/layer.tar"))
    archive = tmp_path / "image.tar"
    archive.write_bytes(tar_bytes(members))
    store = tmp_path / "store"
    r = cli(store, "images", "import", str(archive))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "example.com/app:1"


def test_valid_crafted_archive_imports(tmp_path: Path) -> None:
    """The crafted image the hostile cases start from is itself fine (so each case fails for
    the one thing it breaks)."""
    store = tmp_path / "store"
    archive = tmp_path / "image.tar"
    archive.write_bytes(_valid())
    r = cli(store, "images", "import", str(archive))
    assert r.returncode == 0, r.stderr
    client = store_client(store)
    try:
        [img] = client.images.list()
        assert img.name == "example.com/app:1" and img.target.media_type == mt.OCI_INDEX
        assert client.check("example.com/app:1").complete
    finally:
        client.close()
    archive.write_bytes(tar_bytes(docker_members(crafted_image(n_layers=2))))
    r = cli(store, "images", "import", str(archive))
    assert r.returncode == 0, r.stderr


def test_bad_blob_then_good_archive(tmp_path: Path) -> None:
    """A blob that does not match its digest is dropped, so importing the good archive
    afterwards works (the bad bytes are not resumed)."""
    store = tmp_path / "store"
    archive = tmp_path / "image.tar"
    archive.write_bytes(_mismatch())
    one_line_error(cli(store, "images", "import", str(archive)), "invalid argument", "does not match")
    archive.write_bytes(_valid())
    r = cli(store, "images", "import", str(archive))
    assert r.returncode == 0, r.stderr


def test_missing_or_unreadable_archive(tmp_path: Path) -> None:
    client = store_client(tmp_path / "store")
    try:
        with pytest.raises(NotFound, match=r"archive .*nothere\.tar"):
            import_images(client.content, client.images, tmp_path / "nothere.tar")
    finally:
        client.close()


def test_index_json_fields_through_the_api(tmp_path: Path) -> None:
    """The API names the file and the field as the CLI does."""
    archive = tmp_path / "image.tar"
    archive.write_bytes(_index_entry(size="12")())
    client = store_client(tmp_path / "store")
    try:
        with pytest.raises(InvalidArgument) as e:
            import_images(client.content, client.images, archive)
        assert str(e.value) == (
            f"archive {archive}: index.json: manifests[0]: size must be an integer, not a string"
        )
    finally:
        client.close()


def test_oci_layout_file_checked(tmp_path: Path) -> None:
    c = crafted_image()
    members = [m for m in oci_members(c) if m[0].name != "oci-layout"]
    members.append(member("oci-layout", dumps({"imageLayoutVersion": 1})))
    archive = tmp_path / "image.tar"
    archive.write_bytes(tar_bytes(members))
    one_line_error(
        cli(tmp_path / "store", "images", "import", str(archive)),
        "invalid argument",
        "oci-layout: imageLayoutVersion must be a string",
    )


def test_member_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctrstore.images import archive as archive_mod

    monkeypatch.setattr(archive_mod, "MAX_MEMBERS", 4)
    archive = tmp_path / "image.tar"
    archive.write_bytes(_valid())  # oci-layout, index.json and 4 blobs
    client = store_client(tmp_path / "store")
    try:
        with pytest.raises(InvalidArgument, match="more than 4 members"):
            import_images(client.content, client.images, archive)
        nothing_committed(client)
    finally:
        client.close()
