"""Specs from the generator (``ctrstore.oci``) run by a real ``runc run``: accepted, a read-only
root, a user and a bind mount, host networking, the image's user."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ctrstore.cli._run_flags import parse_volume
from ctrstore.oci import (
    SpecOptions,
    generate,
)

# -- runc ------------------------------------------------------------------------------------

BUSYBOX = Path("/bin/busybox")
RUNC_NAMESPACE = "ctrstore-spec-test"


def _runc_bundle(tmp_path: Path, passwd: str) -> Path:
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(passwd)
    (rootfs / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    return bundle


def _runc_run(tmp_path: Path, bundle: Path, cid: str) -> subprocess.CompletedProcess[str]:
    runc = shutil.which("runc")
    assert runc is not None
    root = tmp_path / "runc-root"
    try:
        return subprocess.run(
            [runc, "--root", str(root), "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run([runc, "--root", str(root), "delete", "--force", cid], capture_output=True)
        # runc removes the container's cgroup but not its (empty) parent, the namespace's.
        for parent in Path("/sys/fs/cgroup").glob(f"*/{RUNC_NAMESPACE}"):
            with contextlib.suppress(OSError):
                parent.rmdir()


@pytest.fixture
def runc_ok() -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    if not BUSYBOX.is_file():
        pytest.skip("no static busybox (apt-get install busybox-static)")


@pytest.mark.root
@pytest.mark.usefixtures("runc_ok")
def test_runc_accepts_the_spec(tmp_path: Path) -> None:
    bundle = _runc_bundle(tmp_path, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    cid = f"ctrstore-spec-test-{os.getpid()}"
    spec = generate(
        cid,
        RUNC_NAMESPACE,
        {"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/false"]}},
        SpecOptions(args=["/bin/sh", "-c", "echo hello-from-runc; id -u"]),
        bundle / "rootfs",
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    proc = _runc_run(tmp_path, bundle, cid)
    if proc.returncode != 0 and "cgroup" in proc.stderr:
        pytest.skip(f"runc cannot create cgroups here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hello-from-runc", "0"]


@pytest.mark.root
@pytest.mark.usefixtures("runc_ok")
def test_runc_read_only_root_user_mount_and_host_net(tmp_path: Path) -> None:
    bundle = _runc_bundle(tmp_path, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "file").write_text("from-host\n")
    (bundle / "rootfs" / "data").mkdir()
    cid = f"ctrstore-spec-test2-{os.getpid()}"
    script = (
        "cat /data/file; id -u; hostname; echo $HOSTNAME; cat /sys/class/net/lo/operstate;"
        " touch /x 2>/dev/null || echo rootfs-ro; touch /data/y 2>/dev/null || echo data-ro;"
        " touch /run/ok && echo run-rw"
    )
    spec = generate(
        cid,
        RUNC_NAMESPACE,
        {"config": {"Entrypoint": ["/bin/sh", "-c"], "User": "nobody"}},
        SpecOptions(
            args=[script],
            user="root",
            read_only=True,
            net="host",
            hostname="spec-box",
            mounts=[parse_volume(f"{shared}:/data:ro")],
        ),
        bundle / "rootfs",
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    proc = _runc_run(tmp_path, bundle, cid)
    if proc.returncode != 0 and "cgroup" in proc.stderr:
        pytest.skip(f"runc cannot create cgroups here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[:4] == ["from-host", "0", "spec-box", "spec-box"]
    assert out[5:] == ["rootfs-ro", "data-ro", "run-rw"]
    assert not (shared / "y").exists()


@pytest.mark.root
@pytest.mark.usefixtures("runc_ok")
def test_runc_runs_as_the_image_user(tmp_path: Path) -> None:
    bundle = _runc_bundle(tmp_path, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    cid = f"ctrstore-spec-test3-{os.getpid()}"
    spec = generate(
        cid,
        RUNC_NAMESPACE,
        {
            "config": {
                "Cmd": ["/bin/sh", "-c", "id -u; id -g; id -G; touch /dev/shm/ok && echo shm-rw"],
                "User": "nobody",
            }
        },
        SpecOptions(net="none"),
        bundle / "rootfs",
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    proc = _runc_run(tmp_path, bundle, cid)
    if proc.returncode != 0 and "cgroup" in proc.stderr:
        pytest.skip(f"runc cannot create cgroups here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["65534", "65534", "65534", "shm-rw"]
