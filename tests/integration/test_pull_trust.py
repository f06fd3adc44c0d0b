"""A pull you can trust (issue #9, pull and unpack): an image is whole in the content store
after every pull, a killed pull keeps what it finished and damages nothing, pulls race each
other and gc safely, and a full disk fails in one line without leaving half a layer behind.

Everything runs as a user would: real ``ctrstore`` processes (SIGKILLed in the kill loop),
Debian's docker-registry on 127.0.0.1, real overlay mounts, and a small ext4 loop-mounted by
the test where the disk must fill up. Every loop is bounded in count and time.

gc releases the leases of killed pulls (their owner process is gone), and ``ctrstore check``
must find the store clean after every scenario.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.content import Descriptor
from ctrstore.images import manifest_for, read_json
from ctrstore.images.build import Compression, Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.mount import temp_mount
from ctrstore.snapshots import Kind
from ctrstore.snapshots.testsuite import check_directory_equal
from ctrstore.unpack import Layer, Unpacker, plan_layers
from tests.support.images import BUSYBOX_APPLETS, find_busybox
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.root

CONTENT = "io.containerd.content.v1.content"
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
CLI_TIMEOUT = 120


# -- the command line ----------------------------------------------------------------------
def cli_env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    return env | {"CTRSTORE_ROOT": str(store / "root"), "CTRSTORE_STATE": str(store / "state")}


def cli(
    store: Path, *args: str, ok: bool = True, timeout: float = CLI_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore", *args],
        capture_output=True,
        text=True,
        env=cli_env(store),
        timeout=timeout,
    )
    if ok:
        assert r.returncode == 0, f"ctrstore {' '.join(args)} failed ({r.returncode}): {r.stderr}"
    return r


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The failed command's only stderr line (no traceback)."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctrstore: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@cache
def assert_store_check_clean(store: Path) -> None:
    """``ctrstore check`` finds nothing wrong."""
    r = cli(store, "check", ok=False)
    assert r.returncode == 0, f"ctrstore check: {r.stdout}{r.stderr}"


# -- images --------------------------------------------------------------------------------
def _rand(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def base_layer() -> bytes:
    return tar_from_entries(
        [
            Entry("bin", "dir"),
            Entry("bin/busybox", data=find_busybox().read_bytes(), mode=0o755),
            *(Entry(f"bin/{a}", "symlink", link="busybox") for a in BUSYBOX_APPLETS[:8]),
            Entry("etc", "dir"),
            Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
            Entry("tmp", "dir", mode=0o1777),
        ]
    )


def files_layer(tag: str, seed: int, *, big: int = 1 << 20, small: int = 60) -> bytes:
    """A directory of ``small`` little files and one incompressible file of ``big`` bytes."""
    return tar_from_entries(
        [
            Entry(tag, "dir"),
            Entry(f"{tag}/big.bin", data=_rand(seed, big)),
            *(Entry(f"{tag}/f{i:03d}", data=f"{tag} {i}\n".encode() * (i + 1)) for i in range(small)),
        ]
    )


def whiteout_layer(seed: int) -> bytes:
    """Removes a file and a directory of the layers below and adds its own."""
    return tar_from_entries(
        [
            Entry("a", "dir"),
            Entry("a/f000", "whiteout"),
            Entry("b", "whiteout"),
            Entry("d", "dir"),
            Entry("d/big.bin", data=_rand(seed, 1 << 20)),
            Entry("d/hello", data=b"hello\n"),
        ]
    )


@dataclass(frozen=True)
class Images:
    """Refs of the test images in the registry (all from the same few layers)."""

    deep: str
    """4 layers, gzip: base, a, b, whiteouts (about 3 MB)."""
    deep_zstd: str
    """The same layers as ``deep``, zstd: other blobs, the same diff_ids and chainIDs."""
    short: str
    """base and a (a prefix of ``deep``)."""
    other: str
    """base and c (shares only the base layer)."""
    big: str
    """Three incompressible 3 MiB layers (9 MiB to download, 9 MiB more unpacked)."""
    bomb: str
    """A small layer, then 64 MiB of zeros in a 64 KiB gzip layer."""

    def all_small(self) -> list[str]:
        return [self.deep, self.deep_zstd, self.short, self.other]


def _push(src: Client, ref: str, layers: list[bytes], compression: Compression = "gzip") -> str:
    build_image(src.content, src.images, ref, layers, ImageSpec(cmd=("sh",)), compression=compression)
    src.push(ref)
    return ref


@pytest.fixture(scope="module")
def images(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Images:
    work = tmp_path_factory.mktemp("trust-src")
    src = Client(root=work / "root", state=work / "state")
    try:
        base, a, b, c, w = (
            base_layer(),
            files_layer("a", 1),
            files_layer("b", 2),
            files_layer("c", 3),
            whiteout_layer(4),
        )
        repo = f"trust-{secrets.token_hex(3)}"
        return Images(
            deep=_push(src, registry.ref(f"{repo}/deep:1"), [base, a, b, w]),
            deep_zstd=_push(src, registry.ref(f"{repo}/deep:zstd"), [base, a, b, w], "zstd"),
            short=_push(src, registry.ref(f"{repo}/short:1"), [base, a]),
            other=_push(src, registry.ref(f"{repo}/other:1"), [base, c]),
            big=_push(
                src,
                registry.ref(f"{repo}/big:1"),
                [tar_from_entries([Entry(f"big{i}", data=_rand(10 + i, 3 << 20))]) for i in range(3)],
            ),
            bomb=_push(
                src,
                registry.ref(f"{repo}/bomb:1"),
                [
                    tar_from_entries([Entry("small", data=b"small\n")]),
                    tar_from_entries([Entry("zeros", data=bytes(64 << 20))]),
                ],
            ),
        )
    finally:
        src.close()


@dataclass
class Reference:
    """A clean pull of every test image but the bomb, each layer's snapshot mounted
    read-only."""

    client: Client
    trees: dict[str, Path]
    """Image ref or chainID -> the mounted tree."""


@pytest.fixture(scope="module")
def reference(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    work = tmp_path_factory.mktemp("trust-reference")
    c = Client(root=work / "root", state=work / "state")
    with ExitStack() as stack:
        trees: dict[str, Path] = {}
        sn = c.snapshotter()
        for ref in [*images.all_small(), images.big, images.bomb]:
            r = c.pull(ref, unpack=ref != images.bomb)
            if r.unpacked is None:
                continue
            for layer in layers_of(c, ref):
                if layer.chain_id not in trees:
                    key = f"ref-{layer.chain_id}"
                    trees[layer.chain_id] = stack.enter_context(
                        temp_mount(sn.view(key, layer.chain_id), work / "mnt")
                    )
                    stack.callback(sn.remove, key)
            trees[ref] = trees[r.unpacked.chain_id]
        yield Reference(c, trees)
    c.close()


def layers_of(client: Client, ref: str) -> list[Layer]:
    content = client.content
    _, manifest = manifest_for(content, client.images.get(ref).target)
    config = Descriptor.from_json(manifest["config"])
    return plan_layers(manifest, read_json(content, config), ref)


def plan_from(reference: Reference, ref: str) -> list[Layer]:
    return layers_of(reference.client, ref)


# -- looking at a store --------------------------------------------------------------------
def blob_files(store: Path) -> list[Path]:
    d = store / "root" / CONTENT / "blobs" / "sha256"
    return sorted(d.iterdir()) if d.is_dir() else []


def ingest_dirs(store: Path) -> list[Path]:
    d = store / "root" / CONTENT / "ingest"
    return sorted(d.iterdir()) if d.is_dir() else []


def ingest_bytes(store: Path) -> int:
    """The bytes partial downloads hold."""
    return sum((d / "data").stat().st_size for d in ingest_dirs(store) if (d / "data").is_file())


def assert_blobs_verify(store: Path, *, racing_gc: bool = False) -> None:
    """Every stored blob's bytes hash to its name (``racing_gc``: a blob gc removes while we
    look is no error)."""
    for p in blob_files(store):
        h = hashlib.sha256()
        try:
            f = open(p, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            if racing_gc:
                continue
            raise
        with f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == p.name, f"blob {p.name} holds bytes hashing to {h.hexdigest()}"


def snapshots(client: Client) -> dict[str, Kind]:
    return {i.name: i.kind for i in client.snapshotter().walk()}


def extract_snapshots(client: Client) -> list[str]:
    return [k for k in snapshots(client) if k.startswith("extract-")]


def committed_prefix(client: Client, plan: list[Layer]) -> int:
    """How many layers of ``plan`` are committed; they must be the bottom ones."""
    have = {k for k, kind in snapshots(client).items() if kind == Kind.COMMITTED}
    n = sum(1 for layer in plan if layer.chain_id in have)
    assert [layer.chain_id in have for layer in plan] == [True] * n + [False] * (len(plan) - n), (
        "committed layers are not the bottom ones",
        [layer.chain_id in have for layer in plan],
    )
    return n


def assert_tree(client: Client, chain_id: str, reference: Reference, work: Path) -> None:
    """The snapshot ``chain_id`` holds exactly what a clean pull made of it."""
    key = f"cmp-{secrets.token_hex(4)}"
    with client.lease():  # a gc running beside must not take the view
        sn = client.snapshotter()
        try:
            with temp_mount(sn.view(key, chain_id), work) as ours:
                check_directory_equal(reference.trees[chain_id], ours)
        except AssertionError as e:  # its report quotes file contents: keep it readable
            raise AssertionError(f"layer {chain_id}: {str(e)[:1500]}") from None
        finally:
            sn.remove(key)


def assert_image_whole(client: Client, ref: str, reference: Reference, work: Path) -> None:
    check = client.check(ref)
    assert check.complete and check.unpacked, check
    assert_tree(client, plan_from(reference, ref)[-1].chain_id, reference, work)


def assert_store_empty(client: Client, store: Path) -> None:
    assert list(client.content.walk()) == []
    assert snapshots(client) == {}
    assert blob_files(store) == []
    assert ingest_dirs(store) == []
    overlay_dirs = store / "root" / OVERLAY / "snapshots"
    assert not overlay_dirs.is_dir() or list(overlay_dirs.iterdir()) == []


# -- 1. an incomplete image is never called complete ---------------------------------------
def layer_lines(out: str, state: str) -> list[str]:
    return [
        line for line in out.splitlines() if line.startswith("layer-sha256:") and line.endswith(f": {state}")
    ]


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)")
def test_repull_fetches_the_layers_gc_took_while_a_container_held_the_snapshots(
    tmp_path: Path, images: Images
) -> None:
    """pull, run -d, rmi, gc (takes the blobs, the container keeps the snapshots), pull: the
    second pull must download the layers again, so check, export and push see a whole image."""
    store, ref = tmp_path, images.short
    holder = f"holder-{secrets.token_hex(3)}"
    cli(store, "pull", "--plain", ref)
    cli(store, "run", "-d", "--name", holder, ref, "sleep", "1000")
    try:
        cli(store, "rmi", "-f", ref)  # -f: the container uses it
        cli(store, "gc")
        assert len(blob_files(store)) == 0, "gc should have taken every blob of the removed image"
        out = cli(store, "pull", "--plain", ref).stdout
        assert "up to date" not in out
        assert len(layer_lines(out, "done")) == 2, out
        assert "exists" in "".join(line for line in out.splitlines() if line.startswith("unpack-")), out
        check = cli(store, "images", "check").stdout
        assert re.search(rf"{re.escape(ref)}\s+complete\s+yes", check), check
        cli(store, "images", "export", str(tmp_path / "out.tar"), ref)
        with tarfile.open(tmp_path / "out.tar") as tf:
            names = set(tf.getnames())
        client = Client(root=store / "root", state=store / "state")
        try:
            for d in [*(layer.desc for layer in layers_of(client, ref))]:
                assert f"blobs/sha256/{d.digest[7:]}" in names
        finally:
            client.close()
        assert_blobs_verify(store)
    finally:
        cli(store, "rm", "-f", holder, ok=False)
    cli(store, "rmi", ref)
    cli(store, "gc")
    client = Client(root=store / "root", state=store / "state")
    try:
        assert_store_empty(client, store)
    finally:
        client.close()
    assert_store_check_clean(store)


def test_zstd_twin_of_an_unpacked_image_gets_its_own_blobs(tmp_path: Path, images: Images) -> None:
    """Pulling the zstd twin of an unpacked gzip image: the snapshots are shared (same
    chainIDs), the blobs are not, so every zstd layer is downloaded and nothing is applied."""
    store = tmp_path
    cli(store, "pull", "--plain", images.deep)
    out = cli(store, "pull", "--plain", images.deep_zstd).stdout
    assert len(layer_lines(out, "done")) == 4, out
    assert not layer_lines(out, "exists"), out
    assert not [
        line for line in out.splitlines() if line.startswith("unpack-") and line.endswith("extracting")
    ]
    check = cli(store, "images", "check").stdout
    assert re.search(rf"{re.escape(images.deep_zstd)}\s+complete\s+yes", check), check
    assert re.search(rf"{re.escape(images.deep)}\s+complete\s+yes", check), check
    # A third pull of either finds everything and fetches nothing.
    again = cli(store, "pull", "--plain", images.deep_zstd).stdout
    assert "up to date" in again and not layer_lines(again, "done"), again
    assert_blobs_verify(store)
    assert_store_check_clean(store)


def test_export_and_push_of_an_incomplete_image_fail_naming_the_blob(
    tmp_path: Path, images: Images, registry: RegistryServer
) -> None:
    store, ref = tmp_path, images.short
    cli(store, "pull", "--plain", ref)
    client = Client(root=store / "root", state=store / "state")
    try:
        gone = layers_of(client, ref)[1].desc.digest
    finally:
        client.close()
    cli(store, "content", "rm", gone)
    assert "incomplete (1 missing)" in cli(store, "images", "check").stdout

    out = tmp_path / "out.tar"
    line = one_error_line(cli(store, "images", "export", str(out), ref, ok=False))
    assert f"layer-{gone}" in line and "not found" in line, line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tar")]
    # An existing file is not clobbered by a failed export.
    out.write_bytes(b"precious")
    one_error_line(cli(store, "images", "export", str(out), ref, ok=False))
    assert out.read_bytes() == b"precious"

    target = registry.ref(f"trust-incomplete-{secrets.token_hex(3)}/x:1")
    cli(store, "images", "tag", ref, target)
    line = one_error_line(cli(store, "push", target, ok=False))
    assert f"layer-{gone}" in line, line
    conn = http.client.HTTPConnection(registry.host, timeout=10)
    try:
        path = target.split("/", 1)[1].replace(":", "/manifests/")
        conn.request("HEAD", f"/v2/{path}")
        assert conn.getresponse().status == 404, "a manifest was pushed for an incomplete image"
    finally:
        conn.close()

    # Pulling again makes it whole, and then export works.
    cli(store, "pull", "--plain", ref)
    cli(store, "images", "export", str(out), ref)
    with tarfile.open(out) as tf:
        assert f"blobs/sha256/{gone[7:]}" in tf.getnames()
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == ref


def test_export_into_a_missing_directory_is_one_line(tmp_path: Path, images: Images) -> None:
    cli(tmp_path, "pull", "--plain", "--no-unpack", images.short)
    line = one_error_line(cli(tmp_path, "images", "export", "/nonexistent/x.tar", images.short, ok=False))
    assert "/nonexistent" in line, line


# -- 4. a killed unpack keeps what it finished ---------------------------------------------
def test_each_layer_is_committed_once_it_and_those_below_are_done(client: Client, tmp_path: Path) -> None:
    """The top layer's blob is held back: every layer below it must be committed meanwhile.
    Then the top layer fails (its download 'dies'): the layers below stay, no extract-*
    snapshot is left, and the next unpack applies only the top layer."""
    layers = [base_layer(), files_layer("a", 1), files_layer("b", 2), whiteout_layer(4)]
    image = build_image(client.content, client.images, "localhost/per-layer:1", layers, ImageSpec())
    plan = layers_of(client, image.name)
    _, manifest = manifest_for(client.content, image.target)
    config = Descriptor.from_json(manifest["config"])
    top = plan[-1]
    release = threading.Event()
    errors: list[BaseException] = []

    def run(fail_top: bool) -> None:
        def ready(layer: Layer) -> None:
            if layer.index == top.index:
                if not release.wait(60):
                    raise TimeoutError("the test never released the top layer")
                if fail_top:
                    raise ConnectionResetError("the download of the top layer died")

        try:
            with client.lease():
                Unpacker(client.content, client.snapshotter(), tmp_dir=client.root / "tmpmounts").unpack(
                    config, plan, blob_ready=ready
                )
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run, args=(True,))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while committed_prefix(client, plan) < len(plan) - 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        below = committed_prefix(client, plan)
    finally:
        release.set()
        t.join(60)
    assert below == len(plan) - 1, f"only {below} of the {len(plan) - 1} layers below the top were committed"
    assert len(errors) == 1 and isinstance(errors[0], ConnectionResetError), errors
    assert committed_prefix(client, plan) == len(plan) - 1
    assert extract_snapshots(client) == []
    result = client.unpack(image.name)
    assert [layer.chain_id for layer in result.applied] == [top.chain_id]
    assert [layer.chain_id for layer in result.skipped] == [layer.chain_id for layer in plan[:-1]]


@dataclass
class KillOutcome:
    """Where a killed pull was: what the store held right after the kill."""

    layer_blobs: int
    committed: int
    extracting: int


def _pull_and_kill(store: Path, ref: str, delay: float, timeout: float = 60) -> float:
    """Start ``ctrstore pull``, wait until the reference is resolved, let it work ``delay``
    seconds more (or until it exits), then SIGKILL it. Returns how long it worked after
    resolving."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctrstore", "pull", "--plain", ref],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(store),
    )
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while b": resolved" not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"pull did not resolve in {timeout}s: {out!r}"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
            assert chunk, f"pull exited before resolving: {out!r}"
            out += chunk
        resolved = time.monotonic()
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        worked = time.monotonic() - resolved
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=timeout)
    return worked


def _phases(outcomes: list[KillOutcome], n: int) -> tuple[int, int, int]:
    """How many kills hit the download (a layer blob missing), the unpack (a layer being
    extracted, or some committed), and left a partial unpack (some layers committed)."""
    fetching = sum(o.layer_blobs < n for o in outcomes)
    unpacking = sum(o.extracting > 0 or 0 < o.committed < n for o in outcomes)
    partial = sum(0 < o.committed < n for o in outcomes)
    return fetching, unpacking, partial


def test_killed_pulls_keep_finished_work_and_damage_nothing(
    tmp_path: Path, images: Images, reference: Reference
) -> None:
    """Kill ``ctrstore pull`` of a 4-layer image at random moments (fetching, unpacking),
    then: every blob hashes to its name, the layers committed are the bottom ones, the next
    pull downloads no blob that was whole and applies only the missing layers, the tree
    equals a clean pull's, and removing the image leaves nothing."""
    seed = int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    ref, store, work = images.deep, tmp_path / "store", tmp_path / "mnt"
    plan = plan_from(reference, ref)
    layer_digests = {layer.desc.digest for layer in plan}
    # How long the pull works after resolving, measured on a clean pull of this image.
    span = max(_pull_and_kill(store, ref, 60), 0.1)
    client = Client(root=store / "root", state=store / "state")
    cli(store, "rmi", ref)
    cli(store, "gc")
    assert_store_empty(client, store)

    outcomes: list[KillOutcome] = []
    # The layers are applied at once while they download and committed bottom-up at the end,
    # so the moments that leave some committed and others not are few: after ten kills at
    # random, kills go between the latest one that left none committed and the earliest that
    # left all (that window narrows as kills land in it).
    none_by, all_from = 0.0, span
    started = time.monotonic()
    for i in range(40):
        fetching, unpacking, partial = _phases(outcomes, len(plan))
        if (i >= 10 and min(fetching, unpacking, partial) >= 2) or time.monotonic() - started > 150:
            break
        aim = i >= 10 and not partial and none_by < all_from
        delay = rnd.uniform(none_by, all_from) if aim else rnd.uniform(0, span)
        what = f"seed {seed}, kill {i} after {delay:.3f}s"
        _pull_and_kill(store, ref, delay)
        assert_blobs_verify(store)
        present = {info.digest for info in client.content.walk()}
        k = committed_prefix(client, plan)
        outcomes.append(KillOutcome(len(present & layer_digests), k, len(extract_snapshots(client))))
        if k == 0:
            none_by = max(none_by, delay)
        elif k == len(plan):
            all_from = min(all_from, delay)

        result = client.pull(ref)
        assert result.unpacked is not None
        assert not set(result.fetched) & present, f"{what}: downloaded again a blob that was whole"
        applied = [layer.chain_id for layer in result.unpacked.applied]
        assert applied == [layer.chain_id for layer in plan[k:]], f"{what}: {k} layers were committed"
        assert_blobs_verify(store)
        assert_image_whole(client, ref, reference, work)
        client.gc()  # the killed pull's lease goes: its owner is gone
        assert_store_check_clean(store)

        client.images.delete(ref)
        client.gc()
        assert_store_empty(client, store)
    client.close()
    print(f"seed {seed}: {len(outcomes)} kills: {outcomes}")
    fetching, unpacking, partial = _phases(outcomes, len(plan))
    assert fetching and unpacking, f"seed {seed}: the kills missed a phase: {outcomes}"
    # Layers are committed one by one: some kills must have left only the bottom ones.
    assert partial, f"seed {seed}: no kill left some layers committed and others not: {outcomes}"


# -- races -----------------------------------------------------------------------------------
def test_four_concurrent_pulls_of_overlapping_images(
    tmp_path: Path, images: Images, reference: Reference
) -> None:
    refs = images.all_small()
    store, work = tmp_path / "store", tmp_path / "mnt"
    client = Client(root=store / "root", state=store / "state")
    try:
        for _ in range(3):
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "ctrstore", "pull", "--plain", ref],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=cli_env(store),
                )
                for ref in refs
            ]
            for ref, p in zip(refs, procs, strict=True):
                out, err = p.communicate(timeout=CLI_TIMEOUT)
                assert p.returncode == 0, f"pull {ref}: {err}\n{out}"
            assert extract_snapshots(client) == []
            assert_blobs_verify(store)
            for ref in refs:
                assert_image_whole(client, ref, reference, work)
            assert_store_check_clean(store)
            for ref in refs:
                client.images.delete(ref)
            client.gc()
            assert client.leases.list() == []
            assert_store_empty(client, store)
    finally:
        client.close()


def test_gc_in_a_loop_beside_pulls(tmp_path: Path, images: Images, reference: Reference) -> None:
    """gc runs over and over while images are pulled and removed: no pull fails, every
    pulled image is whole, and the last gc leaves nothing."""
    store, work = tmp_path / "store", tmp_path / "mnt"
    client = Client(root=store / "root", state=store / "state")
    cli(store, "namespaces", "ls")  # make the store before gc races its creation
    stop = threading.Event()
    gc_runs: list[subprocess.CompletedProcess[str]] = []

    def gc_loop() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and len(gc_runs) < 200 and time.monotonic() < deadline:
            gc_runs.append(cli(store, "gc", ok=False))

    t = threading.Thread(target=gc_loop)
    t.start()
    try:
        for _ in range(3):
            for ref in (images.deep, images.other):
                cli(store, "pull", "--plain", ref)
                assert_image_whole(client, ref, reference, work)
                assert_blobs_verify(store, racing_gc=True)
            cli(store, "rmi", images.deep, images.other)
    finally:
        stop.set()
        t.join(150)
    failed = [r.stderr for r in gc_runs if r.returncode != 0]
    assert not failed, failed
    assert len(gc_runs) >= 2, "gc did not run beside the pulls"
    client.gc()
    assert client.leases.list() == []
    assert_store_empty(client, store)
    assert_store_check_clean(store)
    client.close()


# -- a full disk ---------------------------------------------------------------------------
@contextmanager
def small_ext4(where: Path, size_mb: int) -> Iterator[Path]:
    """A fresh ext4 of ``size_mb`` MiB in a file, loop-mounted; unmounted and removed after,
    even when the test failed."""
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install e2fsprogs mount)")
    if not Path("/dev/loop-control").exists():
        pytest.skip("no loop devices (/dev/loop-control is missing)")
    img = where / "disk.img"
    mnt = Path(tempfile.mkdtemp(prefix="ctrstore-small-disk-", dir=where))
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True, capture_output=True, timeout=60)
        r = subprocess.run(
            ["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True, timeout=60
        )
        if r.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 here: {r.stderr.strip()}")
        try:
            yield mnt
        finally:
            if subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)
    finally:
        img.unlink(missing_ok=True)
        shutil.rmtree(mnt, ignore_errors=True)


def assert_no_space(line: str) -> None:
    """The error line says the disk is full, and how much is free (SQLite's "database or disk
    is full", when a layer's commit is what finds the disk full, gets the same message)."""
    assert re.search(r"no space left on device while writing .*: \d+ MB free", line), line


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def assert_nothing_half_written(client: Client, store: Path, plan: list[Layer], reference: Reference) -> None:
    """After a failed pull: every blob is whole, no extract-* snapshot is left, and every
    committed layer holds what a clean pull made of it."""
    assert_blobs_verify(store)
    assert extract_snapshots(client) == [], snapshots(client)
    k = committed_prefix(client, plan)
    for layer in plan[:k]:
        if layer.chain_id in reference.trees:
            assert_tree(client, layer.chain_id, reference, store / "mnt")
    assert k < len(plan)


@pytest.mark.parametrize(
    ("disk_mb", "unpack"), [(12, False), (16, True)], ids=["download-fills-the-disk", "unpack-fills-the-disk"]
)
def test_pull_onto_a_full_disk(
    tmp_path: Path, images: Images, reference: Reference, disk_mb: int, unpack: bool
) -> None:
    """9 MiB of incompressible layers: fetched onto a 12 MiB disk, and pulled onto a 16 MiB
    disk (the blobs fit, their trees do not); ext4's own overhead and the databases' 1 MiB
    space reserves take about 5 MiB of each. One line, exit 1, nothing half-written kept as
    if whole, no extract-* snapshot; then gc frees what the failed pull left and the store
    takes another image."""
    with small_ext4(tmp_path, disk_mb) as disk:
        store = disk
        r = cli(store, "pull", "--plain", *([] if unpack else ["--no-unpack"]), images.big, ok=False)
        line = one_error_line(r)
        assert_no_space(line)
        client = Client(root=store / "root", state=store / "state")
        try:
            plan = plan_from(reference, images.big)
            assert_nothing_half_written(client, store, plan, reference)
            if not unpack:
                assert not {layer.desc.digest for layer in plan} <= {i.digest for i in client.content.walk()}
            assert client.images.list() == []
            client.gc()
            # A download that found the disk full gave its bytes back; its ingest stays (empty)
            # to be resumed until it expires, as every partial download does.
            assert ingest_bytes(store) == 0 and blob_files(store) == [] and snapshots(client) == {}
            cli(store, "pull", "--plain", images.short)
            assert_image_whole(client, images.short, reference, store / "mnt")
            assert_store_check_clean(store)
        finally:
            client.close()


def test_gzip_bomb_fails_with_no_space_and_leaves_no_extract_snapshot(
    tmp_path: Path, images: Images, reference: Reference
) -> None:
    """A 64 KiB gzip layer that inflates to 64 MiB, onto a 16 MiB disk."""
    with small_ext4(tmp_path, 16) as disk:
        store = disk
        cli(store, "namespaces", "ls")
        before = free_bytes(disk)
        line = one_error_line(cli(store, "pull", "--plain", images.bomb, ok=False))
        assert_no_space(line)
        client = Client(root=store / "root", state=store / "state")
        try:
            plan = plan_from(reference, images.bomb)
            assert_nothing_half_written(client, store, plan, reference)
            # The blobs are whole and kept; the inflated bytes are gone.
            assert {layer.desc.digest for layer in plan} <= {i.digest for i in client.content.walk()}
            assert free_bytes(disk) > before - (4 << 20), (free_bytes(disk), before)
            cli(store, "pull", "--plain", images.short)
            assert_image_whole(client, images.short, reference, store / "mnt")
            # What a cleanup on the full disk could not undo (a layer's snapshot committed in
            # the snapshotter's metadata.db but not in meta.db) is gc's to repair.
            cli(store, "gc")
            assert_store_check_clean(store)
        finally:
            client.close()


def test_a_snapshot_dir_left_by_a_killed_prepare_does_not_block_the_next(client: Client) -> None:
    """A pull killed between renaming a new snapshot's directory into place and committing
    its record leaves ``snapshots/<id>`` for an id the next prepare is given again (the kill
    loop found it: the next pull failed with 'Directory not empty')."""
    sn = client.snapshotter()
    sn.prepare("first", "")
    first = int(Path(sn.mounts("first")[0].source).parent.name)
    stale = client.root / OVERLAY / "snapshots" / str(first + 1)
    (stale / "fs" / "half").mkdir(parents=True)
    (stale / "fs" / "half" / "file").write_bytes(b"left by a killed pull")
    mounts = sn.prepare("second", "")
    assert Path(mounts[0].source).parent == stale
    assert list(Path(mounts[0].source).iterdir()) == []
