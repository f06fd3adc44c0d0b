"""pull and push against Debian's docker-registry on 127.0.0.1, through the API and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ctrstore import Client, Unauthenticated
from ctrstore.images.archive import export_images
from ctrstore.images.build import ImageSpec, build_image, tar_from_entries
from ctrstore.images.pull import Status
from ctrstore.mount import temp_mount
from ctrstore.snapshots.testsuite import check_directory_equal
from tests.support.images import BASE, TOP, UPPER, busybox_image
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.root


def push_busybox(tmp_path: Path, registry: RegistryServer, repo: str, compression: str = "gzip") -> str:
    src = Client(root=tmp_path / "src", state=tmp_path / "src-state")
    ref = registry.ref(repo)
    busybox_image(src.content, src.images, ref, compression=compression)  # type: ignore[arg-type]
    outcomes = src.push(ref)
    assert {o for _, o in outcomes} == {"uploaded"}
    again = src.push(ref)
    assert {o for k, o in again if not k.startswith(("index", "manifest"))} == {"exists"}
    src.close()
    return ref


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_push_pull_unpack_repull(
    client: Client, tmp_path: Path, registry: RegistryServer, compression: str
) -> None:
    ref = push_busybox(tmp_path, registry, f"ctrstore/busybox-{compression}:1", compression)
    seen: list[Status] = []
    result = client.pull(ref, progress=seen.append)
    assert result.image.name == ref
    assert len(result.fetched) == 6
    assert result.unpacked is not None and len(result.unpacked.applied) == 3
    keys = {s.key.split("-sha256:")[0] for s in seen if s.state == "done"}
    assert keys == {"index", "manifest", "config", "layer"}
    check = client.check(ref)
    assert check.complete and check.unpacked
    source = [
        i.labels.get(f"containerd.io/distribution.source.{registry.host}") for i in client.content.walk()
    ]
    assert set(source) == {f"ctrstore/busybox-{compression}"}
    again = client.pull(ref)
    assert again.fetched == [] and again.unpacked is not None and not again.unpacked.applied
    # Removing the image and collecting garbage leaves nothing behind.
    client.images.delete(ref)
    client.gc()
    assert list(client.content.walk()) == [] and list(client.snapshotter().walk()) == []


def test_cross_repo_mount_on_push(client: Client, tmp_path: Path, registry: RegistryServer) -> None:
    ref = push_busybox(tmp_path, registry, "ctrstore/mount-src:1")
    client.pull(ref)
    target = registry.ref("ctrstore/mount-dst:1")
    client.images.create(client.images.get(ref).__class__(target, client.images.get(ref).target))
    outcomes = dict(client.push(target))
    assert "mounted" in outcomes.values(), outcomes


def test_auth_registry_needs_login(
    client: Client, tmp_path: Path, auth_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ref = auth_registry.ref("private/busybox:1")
    busybox_image(client.content, client.images, ref)
    hosts = auth_registry.hosts_dir
    with pytest.raises(Unauthenticated, match="login"):
        client.push(ref, hosts_dir=hosts)
    from ctrstore.remotes import login

    assert auth_registry.username and auth_registry.password
    login(auth_registry.host, auth_registry.username, auth_registry.password, hosts_dir=hosts)
    client.push(ref, hosts_dir=hosts)
    other = client.with_namespace("other")
    other.pull(ref, hosts_dir=hosts)
    assert other.check(ref).unpacked
    other.close()


def test_cli_pull_shows_progress_lines(tmp_path: Path, registry: RegistryServer) -> None:
    ref = push_busybox(tmp_path, registry, "ctrstore/cli:1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    env |= {"CTRSTORE_ROOT": str(tmp_path / "root"), "CTRSTORE_STATE": str(tmp_path / "state")}
    out = subprocess.run(
        [sys.executable, "-m", "ctrstore", "pull", ref], capture_output=True, text=True, env=env, check=True
    ).stdout
    lines = out.splitlines()
    assert any(line.startswith("index-sha256:") and line.endswith(": done") for line in lines), out
    assert sum(line.startswith("layer-sha256:") and line.endswith(": done") for line in lines) == 3, out
    assert lines[-1].startswith("elapsed: ") and "total: " in lines[-1]
    again = subprocess.run(
        [sys.executable, "-m", "ctrstore", "pull", ref], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "up to date" in again
    ls = subprocess.run(
        [sys.executable, "-m", "ctrstore", "images", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert ls.split() == [ref]


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed (apt-get install umoci)")
def test_pulled_tree_equals_umoci_unpack(client: Client, tmp_path: Path, registry: RegistryServer) -> None:
    """Whiteouts, opaque dirs, hard links, symlinks, devices and xattrs survive push and pull:
    the mounted image is exactly what umoci unpacks from the same image."""
    src = Client(root=tmp_path / "src", state=tmp_path / "src-state")
    ref = registry.ref("ctrstore/tree:1")
    layers = [tar_from_entries(BASE), tar_from_entries(UPPER), tar_from_entries(TOP)]
    build_image(src.content, src.images, ref, layers, ImageSpec())
    src.push(ref)
    tar = tmp_path / "layout.tar"
    with open(tar, "wb") as f:
        export_images(src.content, [src.images.get(ref)], f)
    src.close()
    layout = tmp_path / "layout"
    with tarfile.open(tar) as tf:
        tf.extractall(layout, filter="tar")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:1", str(bundle)], check=True, capture_output=True
    )

    result = client.pull(ref)
    assert result.unpacked is not None
    sn = client.snapshotter()
    with temp_mount(sn.view("cmp", result.unpacked.chain_id), client.root / "tmpmounts") as ours:
        check_directory_equal(bundle / "rootfs", ours)
    sn.remove("cmp")
