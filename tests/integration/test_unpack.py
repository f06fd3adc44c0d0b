"""Unpacking images built by our own code into real snapshots, mounted for real."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ctrstore import Client, FailedPrecondition
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.mount import temp_mount
from tests.support.images import BASE, TOP, UPPER

pytestmark = pytest.mark.root


def image(client: Client, compression: str = "gzip") -> str:
    layers = [tar_from_entries(BASE), tar_from_entries(UPPER), tar_from_entries(TOP)]
    build_image(client.content, client.images, "local/test:1", layers, ImageSpec(), compression=compression)  # type: ignore[arg-type]
    return "local/test:1"


def check_tree(root: Path) -> None:
    assert (root / "etc/hostname").read_bytes() == b"upper\n"
    assert (root / "bin/alias").readlink() == Path("tool")
    assert os.stat(root / "bin/tool2").st_ino == os.stat(root / "bin/tool").st_ino
    assert not (root / "gone").exists()
    assert sorted(p.name for p in (root / "opaque").iterdir()) == ["new"]
    st = os.stat(root / "var/lib/data")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert stat.S_ISCHR(os.lstat(root / "dev/null0").st_mode)
    assert os.getxattr(root / "xattr", "user.demo") == b"yes"
    assert stat.S_IMODE(os.stat(root / "root").st_mode) == 0o700


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_unpack_and_mount(client: Client, snapshotter: str, compression: str) -> None:
    name = image(client, compression)
    result = client.unpack(name, snapshotter=snapshotter)
    assert len(result.applied) == 3 and not result.skipped
    sn = client.snapshotter(snapshotter)
    infos = {i.name: i for i in sn.walk()}
    assert set(infos) == {layer.chain_id for layer in result.applied}
    assert infos[result.chain_id].parent == result.applied[1].chain_id
    mounts = sn.view("check", result.chain_id)
    with temp_mount(mounts, client.root / "tmpmounts") as root:
        check_tree(root)
    sn.remove("check")
    again = client.unpack(name, snapshotter=snapshotter)
    assert not again.applied and len(again.skipped) == 3
    # The layer blobs now carry their diffIDs; the config references the top snapshot.
    labels = [i.labels for i in client.content.walk()]
    assert sum("containerd.io/uncompressed" in lb for lb in labels) == 3
    assert any(lb.get(f"containerd.io/gc.ref.snapshot.{snapshotter}") == result.chain_id for lb in labels)


def test_overlay_layers_live_in_numbered_dirs(client: Client) -> None:
    result = client.unpack(image(client))
    snaps = client.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["1", "2", "3"]
    # Layers are numbered bottom-up even though they were applied in parallel, so a
    # container's lowerdir reads 3:2:1 as in the seed.
    [mount] = client.snapshotter().prepare("c", result.chain_id)
    lower = next(o for o in mount.options if o.startswith("lowerdir="))
    assert lower == "lowerdir=" + ":".join(str(snaps / n / "fs") for n in ("3", "2", "1"))
    client.snapshotter().remove("c")
    assert (snaps / "1" / "fs" / "etc" / "passwd").is_file()
    assert (snaps / "2" / "fs" / "etc" / "hostname").read_bytes() == b"upper\n"
    # overlay whiteouts in the upper layer: a 0:0 char device, and the opaque xattr.
    wh = os.lstat(snaps / "2" / "fs" / "gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(snaps / "2" / "fs" / "opaque", "trusted.overlay.opaque") == b"y"


def test_gc_keeps_unpacked_image_and_removes_it_after_rmi(client: Client) -> None:
    name = image(client)
    client.unpack(name)
    assert client.gc().empty
    client.images.delete(name)
    result = client.gc()
    assert len(result.snapshots["overlayfs"]) == 3
    assert list(client.content.walk()) == []
    assert list(client.snapshotter().walk()) == []
    snaps = client.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    assert list(snaps.iterdir()) == []


def test_diff_id_mismatch_commits_nothing(client: Client) -> None:
    name = image(client)
    # Corrupt the config's diff_ids by building a second image whose config lies.
    import json

    from ctrstore.content import Descriptor
    from ctrstore.images import manifest_for, read_json
    from ctrstore.images.build import canonical_json, store_blob
    from ctrstore.images.mediatypes import OCI_CONFIG, OCI_MANIFEST
    from ctrstore.metadata.images import Image

    _, manifest = manifest_for(client.content, client.images.get(name).target)
    cfg = read_json(client.content, Descriptor.from_json(manifest["config"]))
    cfg["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    bad_cfg = store_blob(client.content, canonical_json(cfg), OCI_CONFIG)
    manifest["config"] = bad_cfg.to_json()
    bad_manifest = store_blob(client.content, json.dumps(manifest).encode(), OCI_MANIFEST)
    client.images.create(Image("bad:1", bad_manifest))
    with pytest.raises(FailedPrecondition, match=r"diff_ids\[1\]"):
        client.unpack("bad:1")
    names = [i.name for i in client.snapshotter().walk()]
    assert not any(n.startswith("extract-") for n in names), names


def test_on_native_the_next_layer_is_decoded_while_the_one_below_is_applied(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """native applies layers one after another: the decoding of the next layer (its blob is
    in the content store) starts while the files of the one below are created, and its
    apply takes the decoded stream from there. The base layer's 3000 files take long
    enough to create that both upper layers' decoders are under way when their turn comes;
    the tree is the same as ever."""
    import ctrstore.unpack as unpack_module
    from ctrstore._core import LayerDecoder

    made: list[LayerDecoder] = []

    def recording(path: str) -> LayerDecoder:
        d = LayerDecoder(path)
        made.append(d)
        return d

    monkeypatch.setattr(unpack_module, "LayerDecoder", recording)
    many = [Entry(f"many/d{i % 30}/f{i}", data=b"%d\n" % i) for i in range(3000)]
    layers = [tar_from_entries(BASE + many), tar_from_entries(UPPER), tar_from_entries(TOP)]
    build_image(client.content, client.images, "local/ahead:1", layers, ImageSpec())
    result = client.unpack("local/ahead:1", snapshotter="native")
    assert len(result.applied) == 3
    blobs = {client.content.path(layer.desc.digest): layer.index for layer in result.applied}
    assert sorted(blobs[str(d.path)] for d in made) == [1, 2]
    assert all(d.applied for d in made)
    sn = client.snapshotter("native")
    with temp_mount(sn.view("check", result.chain_id), client.root / "tmpmounts") as root:
        check_tree(root)
        assert len(list((root / "many").rglob("f*"))) == 3000
    sn.remove("check")
