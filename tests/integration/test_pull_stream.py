"""Unpacking while downloading (issue #15): a layer is applied from its ingest as its bytes
arrive, and committed only once the blob verified and its diffID matched.

A slow link (``benches.link``: a TCP proxy on 127.0.0.1 with one shared token bucket) in
front of Debian's docker-registry makes a layer take seconds to arrive, so that a real
``ctrstore pull`` process can be SIGKILLed in the middle of a layer, with part of it applied;
the next pull must resume the download (a Range request) and end with the same tree as a
clean pull. A layer whose bytes are corrupted in the registry's own storage (found only by
the digest check at the end) must leave no snapshot, no blob and no image.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from benches.link import LinkProxy

from ctrstore import Client, FailedPrecondition
from ctrstore.content import Descriptor
from ctrstore.images import manifest_for, read_json
from ctrstore.images.build import Compression, Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.images.pull import Status
from ctrstore.mount import temp_mount
from ctrstore.snapshots import Kind
from ctrstore.snapshots.testsuite import check_directory_equal
from ctrstore.unpack import Layer, plan_layers
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.root

CONTENT = "io.containerd.content.v1.content"
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
CLI_TIMEOUT = 120


def cli_env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    return env | {"CTRSTORE_ROOT": str(store / "root"), "CTRSTORE_STATE": str(store / "state")}


def cli(store: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore", *args],
        capture_output=True,
        text=True,
        env=cli_env(store),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def text_files(tag: str, n: int, size: int) -> bytes:
    """``n`` files of hex text (about 2:1 under gzip), in a few directories."""
    entries = [Entry(f"{tag}", kind="dir")]
    for i in range(n):
        seed = hashlib.sha256(f"{tag}/{i}".encode()).digest()
        data = b"".join(
            hashlib.sha256(seed + j.to_bytes(4, "big")).hexdigest().encode() for j in range(size // 64)
        )
        entries.append(Entry(f"{tag}/d{i % 16}/f{i}", data=data))
    return tar_from_entries(entries)


def push(src: Client, ref: str, layers: list[bytes], compression: Compression = "gzip") -> None:
    build_image(src.content, src.images, ref, layers, ImageSpec(cmd=("sh",)), compression=compression)
    src.push(ref)


def plan_of(client: Client, ref: str) -> list[Layer]:
    _, manifest = manifest_for(client.content, client.images.get(ref).target)
    config = Descriptor.from_json(manifest["config"])
    return plan_layers(manifest, read_json(client.content, config), ref)


def snapshots(client: Client) -> dict[str, Kind]:
    return {i.name: i.kind for i in client.snapshotter().walk()}


def ingest_sizes(store: Path) -> list[int]:
    ingest = store / "root" / CONTENT / "ingest"
    return (
        [d.joinpath("data").stat().st_size for d in ingest.iterdir() if d.joinpath("data").exists()]
        if ingest.is_dir()
        else []
    )


def applied_files(store: Path) -> int:
    """Files in the overlay snapshots' upper dirs (what appliers made so far)."""
    snaps = store / "root" / OVERLAY / "snapshots"
    return (
        sum(len(files) for d in snaps.iterdir() for _, _, files in os.walk(d / "fs")) if snaps.is_dir() else 0
    )


@dataclass
class Streamed:
    registry: RegistryServer
    ref: str
    """Two layers: a small base, then ~10 MB of text files (~5 MB gzip)."""
    big_layer: str
    """The big layer's digest."""
    big_size: int
    plan: list[Layer]
    expected: Path
    """A clean pull's tree of the image (mounted read-only)."""


@pytest.fixture(scope="module")
def streamed(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Streamed]:
    work = tmp_path_factory.mktemp("stream-src")
    src = Client(root=work / "root", state=work / "state")
    ref = registry.ref(f"stream-{secrets.token_hex(3)}/app:1")
    try:
        push(src, ref, [text_files("base", 20, 4096), text_files("big", 600, 16384)])
    finally:
        src.close()
    clean = Client(root=work / "clean" / "root", state=work / "clean" / "state")
    try:
        result = clean.pull(ref)
        assert result.unpacked is not None
        plan = plan_of(clean, ref)
        sn = clean.snapshotter()
        with temp_mount(sn.view("expected", result.unpacked.chain_id), work / "mnt") as tree:
            yield Streamed(registry, ref, plan[-1].desc.digest, plan[-1].desc.size, plan, tree)
        sn.remove("expected")
    finally:
        clean.close()


def assert_same_tree(client: Client, chain_id: str, expected: Path, work: Path) -> None:
    sn = client.snapshotter()
    key = f"cmp-{secrets.token_hex(4)}"
    try:
        with temp_mount(sn.view(key, chain_id), work) as ours:
            try:
                check_directory_equal(expected, ours)
            except AssertionError as e:
                raise AssertionError(str(e)[:1500]) from None
    finally:
        sn.remove(key)


def test_a_pull_killed_in_the_middle_of_a_layer_resumes_it_and_ends_with_the_right_tree(
    tmp_path: Path, streamed: Streamed
) -> None:
    """Over a 1.5 MB/s link, kill ``ctrstore pull`` once the big layer is partly downloaded
    *and* partly applied (files in its snapshot while its blob is incomplete: it is applied
    as it arrives). Then: nothing of it is committed; the next pull asks for the rest of the
    blob only (Range), replays the bytes already in the ingest into the applier, and ends
    with a clean pull's tree; gc then removes what the killed pull left, and the store checks
    clean."""
    store = tmp_path / "store"
    host, _, port = streamed.registry.host.rpartition(":")
    with LinkProxy((host, int(port)), rate=1.5e6) as link:
        ref = streamed.ref.replace(streamed.registry.host, link.host)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctrstore", "pull", "--plain", ref],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=cli_env(store),
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, "the pull ended before it could be killed mid-layer"
                assert time.monotonic() < deadline, (ingest_sizes(store), applied_files(store))
                partial = [n for n in ingest_sizes(store) if streamed.big_size // 4 < n < streamed.big_size]
                if partial and applied_files(store) > 100:
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(CLI_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        client = Client(root=store / "root", state=store / "state")
        try:
            # Killed mid-layer: its blob is not stored, its bytes wait in the ingest, and what
            # was applied of it is in an extract snapshot that nothing committed.
            assert streamed.big_layer not in {i.digest for i in client.content.walk()}
            had = max(ingest_sizes(store))
            assert 0 < had < streamed.big_size
            extracting = [k for k, kind in snapshots(client).items() if k.startswith("extract-")]
            assert extracting and all(snapshots(client)[k] == Kind.ACTIVE for k in extracting)
            plan = streamed.plan
            assert plan[-1].chain_id not in snapshots(client)

            link.set_rate(200e6)
            before = len(link.stats.requests)
            result = client.pull(ref)
            assert result.unpacked is not None
            gets = [r for r in link.stats.requests[before:] if streamed.big_layer in r.line]
            assert gets and all(r.line.startswith("GET ") for r in gets), gets
            start = int((gets[0].range or "bytes=0-").removeprefix("bytes=").split("-")[0])
            assert start >= had > 0, f"the download did not resume: {gets} (the ingest had {had} bytes)"
            assert [x.chain_id for x in result.unpacked.applied] == [plan[-1].chain_id]
            assert_same_tree(client, result.unpacked.chain_id, streamed.expected, tmp_path / "mnt")
            assert client.check(ref).complete
            client.gc()  # the killed pull's lease goes with its process: its extract snapshot too
            assert [k for k in snapshots(client) if k.startswith("extract-")] == []
            r = cli(store, "check", ok=False)
            assert r.returncode == 0, r.stdout + r.stderr
        finally:
            client.close()


def registry_blob(registry: RegistryServer, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return (
        (registry.data or registry.workdir / "data")
        / "docker"
        / "registry"
        / "v2"
        / "blobs"
        / "sha256"
        / hexd[:2]
        / hexd
        / "data"
    )


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_layer_corrupted_in_the_registry_leaves_no_snapshot_no_blob_and_no_image(
    tmp_path: Path, registry: RegistryServer, compression: Compression, request: pytest.FixtureRequest
) -> None:
    """One byte of the top layer is changed in the registry's storage. Gzip: in the header's
    MTIME, which the decoder ignores: the layer applies to the end with the right diffID,
    and only the check of the blob's digest, when its last byte has arrived, finds it.
    Uncompressed: in a file's content (the diffID is wrong too). Either way the pull fails
    naming the blob, and nothing of the layer is kept: no snapshot (active or committed), no
    blob, no image; the layer below, verified, stays committed."""
    src = Client(root=tmp_path / "src" / "root", state=tmp_path / "src" / "state")
    ref = registry.ref(f"corrupt-{secrets.token_hex(3)}/app:{compression}")
    try:
        push(src, ref, [text_files("base", 10, 4096), text_files("top", 40, 8192)], compression)
        top = plan_of(src, ref)[-1]
    finally:
        src.close()
    blob = registry_blob(registry, top.desc.digest)
    original = blob.read_bytes()
    request.addfinalizer(lambda: blob.write_bytes(original))  # the registry is the session's
    data = bytearray(original)
    at = len(data) // 2 if compression == "none" else 4  # mid-file / the gzip header's MTIME
    data[at] ^= 0x20
    blob.write_bytes(bytes(data))

    store = tmp_path / "store"
    r = cli(store, "pull", "--plain", ref, ok=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "failed precondition" in lines[0] and top.desc.digest in lines[0], r.stderr
    assert "registry sent bad content" in lines[0], lines[0]
    client = Client(root=store / "root", state=store / "state")
    try:
        snaps = snapshots(client)
        assert top.chain_id not in snaps
        assert [k for k in snaps if k.startswith("extract-")] == []
        assert snaps == {top.parent: Kind.COMMITTED}
        assert top.desc.digest not in {i.digest for i in client.content.walk()}
        assert client.images.list() == []
        with pytest.raises(FailedPrecondition, match="registry sent bad content"):
            client.pull(ref)
        assert [k for k in snapshots(client) if k.startswith("extract-")] == []
        client.gc()
        assert snapshots(client) == {}
        assert list(client.content.walk()) == []
    finally:
        client.close()


def test_on_the_native_snapshotter_the_layer_being_applied_gets_the_bandwidth(
    tmp_path: Path, registry: RegistryServer
) -> None:
    """native applies layers in order: while the bottom layer is applied as it arrives, the
    downloads of the two above (nobody can apply them yet) give it the link, reading only
    enough to keep their connections alive. Over a 16 MB/s link (with little buffered in it:
    a paused connection still gets what the buffers on its way hold), with 10 MiB layers
    above a 12 MiB one, the bottom layer must arrive first, well before the others (sharing
    the link evenly, it would arrive last), and the image ends with the same tree as a pull
    from the registry itself."""
    src = Client(root=tmp_path / "src" / "root", state=tmp_path / "src" / "state")
    ref = registry.ref(f"native-{secrets.token_hex(3)}/app:1")
    sizes = [12 << 20, 10 << 20, 10 << 20]
    try:
        layers = [
            tar_from_entries(
                [Entry(f"layer{i}/data", data=os.urandom(n)), Entry(f"layer{i}/small", data=b"x")]
            )
            for i, n in enumerate(sizes)
        ]
        push(src, ref, layers, "none")
        plan = plan_of(src, ref)
    finally:
        src.close()

    host, _, port = registry.host.rpartition(":")
    client = Client(root=tmp_path / "store" / "root", state=tmp_path / "store" / "state")
    done: dict[str, float] = {}
    try:
        with LinkProxy((host, int(port)), rate=16e6, sndbuf=64 << 10) as link:
            t0 = time.monotonic()

            def progress(st: Status) -> None:
                if st.state == "done" and st.key.startswith("layer-"):
                    done[st.key.removeprefix("layer-")] = time.monotonic() - t0

            result = client.pull(
                ref.replace(registry.host, link.host), snapshotter="native", progress=progress
            )
        assert result.unpacked is not None
        order = sorted(done, key=done.__getitem__)
        assert order[0] == plan[0].desc.digest, f"the bottom layer did not arrive first: {done}"
        # It had the link nearly to itself: well before the others (evenly shared, the three
        # would end within a few percent of one another).
        assert done[order[0]] < 0.75 * done[order[1]], f"the bottom layer arrived at {done}"
        clean = Client(root=tmp_path / "clean" / "root", state=tmp_path / "clean" / "state")
        try:
            r = clean.pull(ref, snapshotter="native")
            assert r.unpacked is not None
            sn = clean.snapshotter("native")
            with temp_mount(sn.view("expected", r.unpacked.chain_id), tmp_path / "mnt") as expected:
                sn_ours = client.snapshotter("native")
                with temp_mount(sn_ours.view("ours", result.unpacked.chain_id), tmp_path / "mnt") as ours:
                    check_directory_equal(expected, ours)
                sn_ours.remove("ours")
            sn.remove("expected")
        finally:
            clean.close()
    finally:
        client.close()


def test_the_peak_rss_of_a_pull_does_not_grow_with_the_layer(
    tmp_path: Path, registry: RegistryServer
) -> None:
    """A 256 MiB uncompressed layer goes through every stage of a streaming pull (download,
    ingest, the tail that reads it back, decoding, the applier): ``ctrstore pull`` must stay
    under 200 MB of peak RSS (GNU time's ``%M``), less than the layer itself, so no stage
    holds the layer in memory."""
    gnu_time = Path("/usr/bin/time")
    if not gnu_time.exists():
        pytest.skip("GNU time is not installed (apt-get install time)")
    src = Client(root=tmp_path / "src" / "root", state=tmp_path / "src" / "state")
    ref = registry.ref(f"rss-{secrets.token_hex(3)}/app:1")
    size = 256 << 20
    try:
        push(src, ref, [tar_from_entries([Entry("zeros", data=bytes(size))])], "none")
    finally:
        src.close()
    store = tmp_path / "store"
    r = subprocess.run(
        [
            str(gnu_time),
            "-f",
            "%M",
            "-o",
            str(tmp_path / "rss"),
            sys.executable,
            "-m",
            "ctrstore",
            "pull",
            "--plain",
            ref,
        ],
        capture_output=True,
        text=True,
        env=cli_env(store),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    peak_mb = int((tmp_path / "rss").read_text().split()[-1]) / 1024
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB for a {size >> 20} MiB layer"
    client = Client(root=store / "root", state=store / "state")
    try:
        assert client.check(ref).unpacked
    finally:
        client.close()
