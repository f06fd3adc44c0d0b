"""Images built by our own code and by umoci/skopeo, exported, imported, checked and mounted.

What ctrstore unpacks must be exactly the tree ``umoci unpack`` gives for the same image."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.images.archive import export_images, import_images
from ctrstore.images.build import ImageSpec, build_image, tar_from_entries
from ctrstore.mount import is_mountpoint, temp_mount
from ctrstore.snapshots.testsuite import check_directory_equal
from tests.support.images import BASE, TOP, UPPER

pytestmark = pytest.mark.root

needs_umoci = pytest.mark.skipif(
    shutil.which("umoci") is None, reason="umoci is not installed (apt-get install umoci)"
)
needs_skopeo = pytest.mark.skipif(
    shutil.which("skopeo") is None, reason="skopeo is not installed (apt-get install skopeo)"
)


def build(client: Client, name: str = "local/tree:1") -> None:
    layers = [tar_from_entries(BASE), tar_from_entries(UPPER), tar_from_entries(TOP)]
    build_image(client.content, client.images, name, layers, ImageSpec())


def export_layout(client: Client, name: str, tmp: Path) -> Path:
    tar = tmp / "image.tar"
    with open(tar, "wb") as f:
        export_images(client.content, [client.images.get(name)], f)
    layout = tmp / "layout"
    with tarfile.open(tar) as tf:
        tf.extractall(layout, filter="tar")
    return layout


@needs_umoci
def test_unpacked_tree_equals_umoci_unpack(client: Client, tmp_path: Path) -> None:
    build(client)
    layout = export_layout(client, "local/tree:1", tmp_path)
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:1", str(bundle)], check=True, capture_output=True
    )
    result = client.unpack("local/tree:1")
    sn = client.snapshotter()
    with temp_mount(sn.view("cmp", result.chain_id), client.root / "tmpmounts") as ours:
        check_directory_equal(bundle / "rootfs", ours)
    sn.remove("cmp")


@needs_umoci
def test_import_what_umoci_wrote(client: Client, tmp_path: Path) -> None:
    layout = tmp_path / "oci"

    def run(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    run("init", "--layout", str(layout))
    run("new", "--image", f"{layout}:base")
    run("unpack", "--image", f"{layout}:base", str(tmp_path / "b"))
    rootfs = tmp_path / "b" / "rootfs"
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "motd").write_text("made by umoci\n")
    (rootfs / "link").symlink_to("etc/motd")
    run("repack", "--image", f"{layout}:base", str(tmp_path / "b"))
    run("config", "--image", f"{layout}:base", "--config.cmd", "/bin/true")
    archive = tmp_path / "oci.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(layout, arcname=".")
    imported = import_images(client.content, client.images, archive)
    assert [i.name for i in imported] == ["base"]
    check = client.check("base")
    assert check.complete and not check.unpacked
    client.unpack("base")
    assert client.check("base").unpacked
    target = tmp_path / "mnt"
    target.mkdir()
    client.mount_image("base", target)
    try:
        assert (target / "etc" / "motd").read_text() == "made by umoci\n"
        assert (target / "link").readlink() == Path("etc/motd")
    finally:
        client.unmount_image(target)
    assert not is_mountpoint(target)


@needs_skopeo
def test_import_docker_save_archive_from_skopeo(client: Client, tmp_path: Path) -> None:
    build(client, "local/tree:1")
    layout = export_layout(client, "local/tree:1", tmp_path)
    archive = tmp_path / "docker.tar"
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            f"oci:{layout}:1",
            f"docker-archive:{archive}:example.com/saved:v1",
        ],
        check=True,
        capture_output=True,
    )
    other = client.with_namespace("imported")
    imported = import_images(other.content, other.images, archive)
    assert [i.name for i in imported] == ["example.com/saved:v1"]
    r1 = client.unpack("local/tree:1")
    r2 = other.unpack("example.com/saved:v1")
    assert r1.chain_id == r2.chain_id, "same layers, same diffIDs, same chainID"
    other.close()


def test_export_import_roundtrip_and_gc(client: Client, tmp_path: Path) -> None:
    build(client)
    tar = tmp_path / "x.tar"
    with open(tar, "wb") as f:
        n = export_images(client.content, [client.images.get("local/tree:1")], f)
    assert n == 6  # index, manifest, config, 3 layers
    other = client.with_namespace("copy")
    [img] = import_images(other.content, other.images, tar)
    assert img.target == client.images.get("local/tree:1").target
    assert other.check(img.name).complete
    other.images.delete(img.name)
    other.gc()
    assert list(other.content.walk()) == []
    assert client.check("local/tree:1").complete, "the other namespace still holds its blobs"
    other.close()
