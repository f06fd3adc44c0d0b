"""The whole path side by side with the real containerd: pull + unpack (cold and warm), sha256 of
the layer blobs, peak RSS of a pull, and ``run --rm IMAGE true``, on images built on this
machine and served by a local registry.

``./scripts/setup`` installs what it needs (``containerd``, ``runc``, ``docker-registry``; with
``--bench`` also matplotlib, for the chart); the suite installs nothing itself. Everything else
is set up here: one ext4 is made in a sparse file and loop-mounted, and it holds
the registry's storage and the roots of both tools; Debian's ``containerd`` is started with its
own config (root on that ext4, state and gRPC socket in a temporary directory, the CRI plugin
disabled) and driven with ``ctr --address SOCK -n NS``; ctrstore runs as its CLI, a new process
per command, as ``ctr`` does. A cold pull starts from an empty store: ctrstore's root and state
are removed, and containerd is restarted on a new, empty root (it keeps one blob store for all
namespaces, so deleting images is not enough). The tools alternate within each round and the
order is rotated from round to round.

Images (all built locally, pushed to the registry on 127.0.0.1):

- ``busybox``: Debian's static busybox in three gzip layers (``tests.support.images``);
- ``small``: a small 4-layer image from ``/usr`` (``benches.apply``'s check image), gzip and zstd;
- ``usr``: the realistic 4-layer image from ``/usr`` of ``benches.apply`` (tens of thousands
  of files, a few hundred MB, whiteouts, an opaque directory), gzip and zstd (full mode only).

Measured: ``ctrstore pull`` vs ``ctr images pull`` (cold: empty store, page cache warm; full
mode also with the page cache dropped), the same cold pull by an ordinary user, rootless (a
user made for the run by ``tests.support.rootless``, as the rootless tests make theirs, its
home and store on the loop ext4, its namespace's pause process started once; against root's
pull), the same pull again (nothing to do), ctrstore's sha256
digester vs ``sha256sum`` over the pulled layer blobs, the peak RSS of ``ctrstore pull``
(GNU time's ``%M``), and ``ctrstore run --rm IMAGE true`` vs ``ctr run --rm IMAGE ID true`` (runc for
both), and a fan-out: N nodes (N = 4; 3 in quick mode), each a store with ``ctrstore serve`` on
its own 127.0.0.x, pull one image (``/usr, gzip``; the small one in quick mode) all from the
registry, or the first from the registry and the others through it (its serve as their
mirror in hosts.toml): the total time and the bytes the registry sent. Over a link
(``benches.link``: a TCP proxy in front of the registry whose connections share one token
bucket, as a machine's connections share its link) of 50 and 200 MB/s, the gzip image (the
small one in quick mode) is pulled cold three ways, alternating: ``ctrstore pull --no-unpack``
(the download alone), ``ctrstore pull`` and ``ctr images pull``. Unpack alone is
``python -m benches apply``. Every run is checked: both tools end up
with the pushed digest, ctrstore's image is complete and unpacked (only complete after
``--no-unpack``), the second pull fetches nothing, every run exits 0, and ctrstore's and
containerd's mounted root file systems are the same tree (names, types, modes, sizes, owners,
links, and the content of a sample); in the fan-out every node holds the whole image, the
registry sent it exactly once per node that pulled from it, and the other nodes' blobs all
came from the first node; the rootless pull has every layer blob, one snapshot per layer, the
snapshots' roots owned by the user. The user is removed afterwards (its processes killed, its
lines of /etc/subuid and /etc/subgid removed).

    python -m benches suite            # full: all images, 5 rounds (+3 with the cache dropped)
    python -m benches suite --quick    # busybox and the small image, 2 rounds (under 3 minutes)
    python -m benches suite --check    # quick mode once: correctness only, writes nothing;
                                       # non-zero exit status on a correctness failure
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from tests.support.images import busybox_image
from tests.support.registry import RegistryServer, ToolMissing, start_registry, stop_registry
from tests.support.rootless import Unavailable, User, made_users, make_venv

from benches import apply
from benches.sha256 import by_ctrstore, by_sha256sum

RESULTS = Path(__file__).parent / "results"
NAMESPACE = "ctrstore-suite"
GNU_TIME = "/usr/bin/time"
MB = 1e6

# Targets, on the big images (gzip and zstd), medians of the same run.
TARGET_COLD_RATIO = 0.25  # ctrstore cold pull + unpack / containerd's
TARGET_LINK_DOWNLOAD_RATIO = 1.1  # over the 50 MB/s link: ctrstore pull / its download alone
TARGET_LINK_RATIO = 0.5  # over the 50 MB/s link: ctrstore pull / containerd's
LINK_RATES = (50, 200)  # MB/s
TARGET_LINK_RATE = 50
TARGET_WARM_S = 0.2  # ctrstore's second pull of the same image
TARGET_RSS_MB = 200.0  # peak RSS of ``ctrstore pull``
TARGET_RUN_RATIO = 1.0  # ctrstore run --rm true / ctr run --rm true

COLD = "cold pull + unpack"
COLD_DROPPED = "cold pull + unpack, page cache dropped"
COLD_ROOTLESS = "cold pull + unpack, rootless"
WARM = "warm re-pull (nothing to do)"
SHA = "sha256 of the layer blobs"
RUN = "run --rm IMAGE true"
START = "CLI start-up (--version)"
RSS = "peak RSS of the pull (MB)"
FANOUT = "fan-out: every node pulls (no unpack)"
FANOUT_MB = "fan-out: MB the registry sent"
FAN_DIRECT = "ctrstore, all from the registry"
FAN_PEERS = "ctrstore, through peers (serve)"

CTRSTORE = "ctrstore"
CTRSTORE_DOWNLOAD = "ctrstore --no-unpack (download only)"
CONTAINERD = "containerd 1.6 (ctr)"
SHA_CTRSTORE = "ctrstore.sha256_file"
SHA_COREUTILS = "sha256sum"


class Failure(Exception):
    """A setup step failed (not a measurement)."""


def link_measure(rate: int) -> str:
    return f"cold pull over a {rate} MB/s link"


LINKS = tuple(link_measure(r) for r in LINK_RATES)


# --------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    cmd: list[str]
    rc: int
    elapsed: float
    maxrss_kb: int
    out: str

    def describe(self) -> str:
        tail = self.out.strip().splitlines()[-5:]
        return f"`{' '.join(self.cmd)}` exited {self.rc}: " + " / ".join(tail)


def timed(cmd: Sequence[str], log: Path, *, rss: bool = False) -> Proc:
    """Run ``cmd`` (output to ``log``) and time it. With ``rss``, its peak RSS too, read by GNU
    time (``%M``, from ``wait4`` on a child it forks itself): the ``ru_maxrss`` this process's
    own ``wait4`` returns is useless here, as Linux starts a child's figure at the RSS of the
    process it was forked (or vforked) from, and this one holds the image's file lists."""
    spied = rss and Path(GNU_TIME).exists()
    rss_file = log.with_suffix(".rss")
    argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd] if spied else list(cmd)
    with open(log, "wb") as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        elapsed = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss
    if spied:
        lines = rss_file.read_text().split()
        maxrss = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return Proc(list(cmd), p.returncode, elapsed, maxrss, log.read_text(errors="replace"))


def quiet(
    cmd: Sequence[str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        list(cmd), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False
    )
    if check and r.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-800:]}")
    return r


def ctrstore_cli() -> list[str]:
    script = Path(sys.executable).parent / "ctrstore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ctrstore"]


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_under(path: Path) -> None:
    for point in mounts_under(path):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def processes_mentioning(markers: Sequence[str]) -> list[int]:
    """Processes (not this one) whose command line names one of ``markers``."""
    me = os.getpid()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmdline for m in markers):
            pids.append(int(d.name))
    return pids


def remove_tree(path: Path) -> None:
    unmount_under(path)
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


# --------------------------------------------------------------------------------------------
# Setup: packages, registry, containerd


def check_tools() -> None:
    """containerd, ctr, runc and docker-registry must be installed (``./scripts/setup`` installs
    them; the suite installs nothing itself)."""
    missing = [b for b in ("containerd", "ctr", "runc", "docker-registry") if shutil.which(b) is None]
    if missing:
        raise Failure(f"{', '.join(missing)} not installed: run ./scripts/setup")


def compile_ctrstore() -> None:
    """Byte-compile ctrstore, as ``pip install`` does: with ``PYTHONDONTWRITEBYTECODE`` set (as
    on these machines) a source checkout has no ``__pycache__``, and every CLI process would
    compile ~70 modules again (~90 ms)."""
    import compileall

    import ctrstore

    compileall.compile_dir(str(Path(ctrstore.__file__).parent), quiet=1)


def pyplot() -> Any:
    """matplotlib.pyplot (Agg); None if matplotlib is not installed (the chart is then skipped;
    ``./scripts/setup --bench`` installs it)."""
    try:
        mpl = importlib.import_module("matplotlib")
    except ImportError:
        return None
    mpl.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


class Link:
    """``benches.link`` in its own process (so its threads do not share this one's GIL): the
    registry behind a link of ``rate`` MB/s."""

    def __init__(self, registry: RegistryServer, rate: int) -> None:
        self.registry = registry
        self.rate = rate
        self.host = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "benches.link", "--upstream", self.registry.host]
        self.proc = subprocess.Popen(
            [*argv, "--rate", str(self.rate)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        assert self.proc.stdout is not None
        self.host = self.proc.stdout.readline().strip()
        if not re.fullmatch(r"127\.0\.0\.1:\d+", self.host):
            self.stop()
            raise Failure(f"benches.link did not start (it said {self.host!r})")

    def ref(self, img: BenchImage) -> str:
        return img.ref.replace(self.registry.host, self.host, 1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Containerd:
    """Debian's containerd with its own root (``root``), state and socket (under ``run``)."""

    def __init__(self, root: Path, run: Path) -> None:
        self.root = root
        self.run_dir = run
        self.state = run / "state"
        self.sock = run / "containerd.sock"
        self.runc_root = run / "runc"
        self.config = run / "config.toml"
        self.log = run / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ]
        self.config.write_text(
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            f"disabled_plugins = {json.dumps(disabled)}\n"
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            f'[debug]\n  address = "{self.run_dir / "debug.sock"}"\n  level = "warn"\n'
            '[metrics]\n  address = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.root / "opt"}"\n'
        )

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.sock), "-n", NAMESPACE, *args]

    def start(self) -> None:
        self.write_config()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise Failure(f"containerd exited {self.proc.returncode}: {self.log.read_text()[-1500:]}")
            if self.sock.exists():
                r = subprocess.run(
                    ["ctr", "--address", str(self.sock), "version"], capture_output=True, check=False
                )
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise Failure(f"containerd did not answer in 30 s: {self.log.read_text()[-1500:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart_empty(self) -> None:
        """Stop, remove root and state, start again: an empty store."""
        self.stop()
        remove_tree(self.root)
        remove_tree(self.state)
        self.start()

    def peak_rss_kb(self) -> int:
        """The daemon's peak RSS since it started (VmHWM)."""
        if self.proc is None:
            return 0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def image_digest(self, ref: str) -> str:
        out = quiet(self.ctr("images", "ls")).stdout
        for line in out.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref:
                return cols[2]
        return ""


class Ctrstore:
    """A ctrstore store: root on the loop file system, state in the temporary directory."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.state = state

    def cli(self, *args: str) -> list[str]:
        return [*ctrstore_cli(), "--root", str(self.root), "--state", str(self.state), "-n", NAMESPACE, *args]

    def wipe(self) -> None:
        remove_tree(self.state)
        remove_tree(self.root)

    def blob(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        return self.root / "io.containerd.content.v1.content" / "blobs" / algo / hexd


# --------------------------------------------------------------------------------------------
# Images


@dataclass
class BenchImage:
    key: str
    label: str
    ref: str
    digest: str  # of the index pushed
    layer_digests: list[str]
    compressed: int
    uncompressed: int
    entries: int
    big: bool = False


def push_busybox(registry: RegistryServer, scratch: Path) -> BenchImage:
    from ctrstore import Client

    client = Client(root=scratch / "builder-root", state=scratch / "builder-state")
    try:
        name = "localhost/busybox:latest"
        image = busybox_image(client.content, client.images, name, compression="gzip", cmd=("sh",))
        ref = f"{registry.host}/bench/busybox:gzip"
        client.push(name, ref, plain_http=True)
        layers = client.resolve(image).layers
        uncompressed = 0
        entries = 0
        from ctrstore.archive import apply_layer

        for i, layer in enumerate(layers):  # unpack once, off the record, for the sizes
            d = scratch / f"busybox-layer{i}"
            d.mkdir()
            st = apply_layer(d, Path(client.content.path(layer.digest)), whiteouts="delete")
            uncompressed += st.uncompressed_bytes
            entries += st.entries
            shutil.rmtree(d)
        return BenchImage(
            "busybox",
            "busybox (3 gzip layers)",
            ref,
            image.target.digest,
            [x.digest for x in layers],
            sum(x.size for x in layers),
            uncompressed,
            entries,
        )
    finally:
        client.close()
        shutil.rmtree(scratch / "builder-root", ignore_errors=True)
        shutil.rmtree(scratch / "builder-state", ignore_errors=True)


def _json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def push_layers(
    registry: RegistryServer, key: str, label: str, repo: str, image: apply.Image, compression: str, big: bool
) -> BenchImage:
    """Push an image made of ``image``'s layer files (streamed from disk), with an OCI index."""
    from ctrstore import sha256_file
    from ctrstore.content import Descriptor
    from ctrstore.images import mediatypes as mt
    from ctrstore.images.platforms import host
    from ctrstore.remotes import Resolver

    media_type = mt.OCI_LAYER_GZIP if compression == "gzip" else mt.OCI_LAYER_ZSTD
    ref = f"{registry.host}/{repo}:{compression}"
    plat = host()
    diff_ids, descs = [], []
    for layer in image.layers:
        if not layer.diff_id:
            layer.diff_id = sha256_file(layer.tar)[0]
        diff_ids.append(layer.diff_id)
        blob = layer.path(compression)
        descs.append(Descriptor(media_type, sha256_file(blob)[0], blob.stat().st_size))
    config = _json_bytes(
        {
            "created": "2023-11-14T22:13:20Z",
            "architecture": plat.architecture,
            "os": plat.os,
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"benches.suite layer {i}"} for i in range(len(descs))],
        }
    )
    from ctrstore import sha256_bytes

    config_desc = Descriptor(mt.OCI_CONFIG, sha256_bytes(config), len(config))
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [d.to_json() for d in descs],
        }
    )
    manifest_desc = Descriptor(
        mt.OCI_MANIFEST,
        sha256_bytes(manifest),
        len(manifest),
        platform={"os": plat.os, "architecture": plat.architecture},
    )
    index = _json_bytes(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [manifest_desc.to_json()]}
    )
    index_desc = Descriptor(mt.OCI_INDEX, sha256_bytes(index), len(index))
    with Resolver(plain_http=True) as resolver:
        pusher = resolver.pusher(ref)
        for layer, desc in zip(image.layers, descs, strict=True):
            with open(layer.path(compression), "rb") as f:
                pusher.push(desc, f)
        pusher.push(config_desc, config)
        pusher.push(manifest_desc, manifest)
        pusher.push(index_desc, index, tag=compression)
    return BenchImage(
        key,
        label,
        ref,
        index_desc.digest,
        [d.digest for d in descs],
        sum(d.size for d in descs),
        image.tar_bytes,
        image.entries,
        big,
    )


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Series:
    image: str
    measure: str
    tool: str
    values: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)  # peak RSS (MB) next to the times


@dataclass
class FanNode:
    """One node of the fan-out: a store and its ``ctrstore serve``."""

    cs: Ctrstore
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick or args.check
        self.rounds: int = (
            args.rounds if args.rounds is not None else (1 if args.check else (2 if self.quick else 5))
        )
        self.drop_rounds: int = 0 if self.quick else (args.drop_rounds if args.drop_rounds is not None else 3)
        self.run_rounds: int = max(self.rounds, 3) if not args.check else 1
        self.series: dict[tuple[str, str, str], Series] = {}
        self.failures: list[str] = []
        self.images: list[BenchImage] = []
        self.loop: apply.LoopFs | None = None
        self.fs: Path | None = None
        self.tmp: Path | None = None
        self.registry: RegistryServer | None = None
        self.link: Link | None = None
        self.containerd: Containerd | None = None
        self.ctrstore: Ctrstore | None = None
        self.rootless: User | None = None
        self.rootless_stack = contextlib.ExitStack()
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.fan_nodes: int = 3 if self.quick else 4
        self.image_bytes: dict[str, int] = {}
        self.loads: list[float] = []
        """The 1-minute load average at each measurement (the machine may be shared)."""

    # -- bookkeeping
    def add(self, image: str, measure: str, tool: str, value: float, extra: float | None = None) -> None:
        self.loads.append(os.getloadavg()[0])
        s = self.series.setdefault((image, measure, tool), Series(image, measure, tool))
        s.values.append(value)
        if extra is not None:
            s.extra.append(extra)

    def fail(self, what: str) -> None:
        print(f"  FAILED: {what}", flush=True)
        self.failures.append(what)

    def log(self, name: str) -> Path:
        assert self.tmp is not None
        return self.tmp / "logs" / name

    def settle(self) -> None:
        assert self.fs is not None
        apply.syncfs(self.fs)
        if self.loop is not None:
            self.loop.flush()
        time.sleep(apply.SETTLE if not self.quick else 0.2)

    # -- setup and teardown
    def setup(self) -> None:
        check_tools()
        compile_ctrstore()
        for tool in ("mkfs.ext4", "pigz", "zstd"):
            if shutil.which(tool) is None:
                raise Failure(f"{tool} is missing: run ./scripts/setup")
        self.tmp = Path(
            tempfile.mkdtemp(prefix="ctrstore-suite-", dir="/run" if Path("/run").is_dir() else None)
        )
        (self.tmp / "logs").mkdir()
        cache = Path(self.args.cache)
        cache.mkdir(parents=True, exist_ok=True)
        self.loop = apply.LoopFs(cache, size="4G" if self.quick else "16G")
        t0 = time.perf_counter()
        self.fs = self.loop.__enter__()
        print(f"loop ext4 on {self.fs} ({time.perf_counter() - t0:.1f} s)", flush=True)
        try:
            self.registry = start_registry(self.fs / "registry")
        except (ToolMissing, RuntimeError) as e:
            raise Failure(str(e)) from e
        self.containerd = Containerd(self.fs / "containerd-root", self.tmp / "containerd")
        self.ctrstore = Ctrstore(self.fs / "ctrstore-root", self.tmp / "ctrstore-state")
        self.setup_rootless()

    def setup_rootless(self) -> None:
        """An ordinary user with subordinate ids, its home (so its store) on the loop ext4, run
        with a venv of Debian's python3 there (``tests.support.rootless``, as the rootless tests
        do), and its namespace's pause process started, as after a user's first command."""
        assert self.fs is not None
        t0 = time.perf_counter()
        homes = self.fs / "rootless"
        homes.mkdir(mode=0o755)
        try:
            venv = make_venv(self.fs / "rootless-venv")
            user = self.rootless_stack.enter_context(made_users(homes, venv, [("ctrbench", True)]))[0]
        except Unavailable as e:
            raise Failure(f"rootless: {e}") from e
        self.rootless = user
        r = subprocess.run(self.rootless_cli("unshare", "true"), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Failure(f"rootless: `ctrstore unshare true` as {user.name}: {r.returncode}: {r.stderr}")
        print(f"rootless user {user.name} and its venv ({time.perf_counter() - t0:.1f} s)", flush=True)

    def rootless_cli(self, *args: str) -> list[str]:
        """``ctrstore ARGS`` as the rootless user, with its own environment only."""
        u = self.rootless
        assert u is not None
        env = [f"{k}={v}" for k, v in u.env.items()]
        return u.argv("env", "-i", *env, u.env["CTRSTORE_PYTHON"], "-m", "ctrstore", "-n", NAMESPACE, *args)

    def teardown(self) -> None:
        """Stop and remove everything this run made, whatever state it is in."""
        markers = [str(p) for p in (self.tmp, self.fs) if p is not None]
        with contextlib.suppress(Exception):
            self.kill_containers()
        with contextlib.suppress(Exception):
            self.rootless_stack.close()  # the user's processes, the user, /etc/subuid as it was
        if self.containerd is not None:
            with contextlib.suppress(Exception):
                self.containerd.stop()
        if self.link is not None:
            with contextlib.suppress(Exception):
                self.link.stop()
        for pid in processes_mentioning(markers) if markers else []:  # shims, stray pulls
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.registry is not None:
            with contextlib.suppress(Exception):
                stop_registry(self.registry)
        if self.fs is not None:
            for point in mounts_under(self.fs):
                if point != str(self.fs):
                    subprocess.run(["umount", "-l", point], capture_output=True)
        if self.tmp is not None:
            unmount_under(self.tmp)
        if self.loop is not None:
            image = self.loop.image
            with contextlib.suppress(Exception):
                self.loop.close()
            for line in quiet(["losetup", "-j", str(image)], check=False).stdout.splitlines():
                subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)
            image.unlink(missing_ok=True)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        for hierarchy in Path("/sys/fs/cgroup").glob("*"):
            with contextlib.suppress(OSError):
                (hierarchy / NAMESPACE).rmdir()
        with contextlib.suppress(OSError):
            (Path("/sys/fs/cgroup") / NAMESPACE).rmdir()

    def kill_containers(self) -> None:
        """Containers runc still knows under this run's runc roots: kill and delete them."""
        if self.tmp is None:
            return
        for state in [p.parent for p in self.tmp.rglob("state.json")]:
            runc_root = state.parent
            cid = state.name
            subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"], capture_output=True)
            subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", cid], capture_output=True)

    # -- images
    def build_images(self) -> None:
        assert self.registry is not None and self.tmp is not None
        cache = Path(self.args.cache)
        t0 = time.perf_counter()
        self.images.append(push_busybox(self.registry, self.tmp))
        small = apply.build_image(apply.CHECK, cache / f"apply-{apply.CHECK.name}-v{apply.IMAGE_VERSION}")
        for comp in ("gzip", "zstd"):
            self.images.append(
                push_layers(
                    self.registry, f"small-{comp}", f"small /usr, {comp}", "bench/small", small, comp, False
                )
            )
        if not self.quick:
            usr = apply.build_image(apply.FULL, cache / f"apply-{apply.FULL.name}-v{apply.IMAGE_VERSION}")
            for comp in ("gzip", "zstd"):
                self.images.append(
                    push_layers(self.registry, f"usr-{comp}", f"/usr, {comp}", "bench/usr", usr, comp, True)
                )
        print(f"images built and pushed in {time.perf_counter() - t0:.1f} s", flush=True)
        for img in self.images:
            print(
                f"  {img.ref}: {len(img.layer_digests)} layers, {img.compressed / MB:.1f} MB -> "
                f"{img.uncompressed / MB:.1f} MB, {img.entries} entries, {img.digest[:19]}",
                flush=True,
            )

    # -- one cold pull (+ a warm one) by one tool
    def pull_ctrstore(self, img: BenchImage, r: int, measure: str, drop: bool) -> None:
        cs = self.ctrstore
        assert cs is not None
        cs.wipe()
        self.settle()
        if drop:
            apply.drop_caches()
        p = timed(
            cs.cli("pull", "--plain-http", "--plain", img.ref),
            self.log(f"{img.key}-cs-cold-{r}.log"),
            rss=True,
        )
        rss = p.maxrss_kb * 1024 / MB
        print(f"    ctrstore   {measure}: {p.elapsed:6.2f} s, peak RSS {rss:.0f} MB", flush=True)
        if p.rc != 0:
            self.fail(f"{img.key}: ctrstore cold pull: {p.describe()}")
            return
        self.add(img.key, measure, CTRSTORE, p.elapsed, rss)
        if "up to date" in p.out:
            self.fail(f"{img.key}: ctrstore's cold pull says the image was up to date")
        if drop:
            return
        w = timed(cs.cli("pull", "--plain-http", "--plain", img.ref), self.log(f"{img.key}-cs-warm-{r}.log"))
        print(f"    ctrstore   {WARM}: {w.elapsed:6.2f} s", flush=True)
        if w.rc != 0:
            self.fail(f"{img.key}: ctrstore warm pull: {w.describe()}")
            return
        self.add(img.key, WARM, CTRSTORE, w.elapsed)
        if "up to date (nothing fetched or unpacked)" not in w.out:
            self.fail(f"{img.key}: ctrstore's second pull fetched or unpacked something: {w.out[-400:]!r}")

    def pull_containerd(self, img: BenchImage, r: int, measure: str, drop: bool) -> None:
        cd = self.containerd
        assert cd is not None
        cd.restart_empty()
        self.settle()
        if drop:
            apply.drop_caches()
        p = timed(
            cd.ctr("images", "pull", "--plain-http", img.ref),
            self.log(f"{img.key}-cd-cold-{r}.log"),
            rss=True,
        )
        rss = (cd.peak_rss_kb() + p.maxrss_kb) * 1024 / MB
        print(f"    containerd {measure}: {p.elapsed:6.2f} s, peak RSS daemon + ctr {rss:.0f} MB", flush=True)
        if p.rc != 0:
            self.fail(f"{img.key}: ctr images pull: {p.describe()}")
            return
        self.add(img.key, measure, CONTAINERD, p.elapsed, rss)
        if drop:
            return
        w = timed(cd.ctr("images", "pull", "--plain-http", img.ref), self.log(f"{img.key}-cd-warm-{r}.log"))
        print(f"    containerd {WARM}: {w.elapsed:6.2f} s", flush=True)
        if w.rc != 0:
            self.fail(f"{img.key}: second ctr images pull: {w.describe()}")
            return
        self.add(img.key, WARM, CONTAINERD, w.elapsed)

    def pull_rootless(self, img: BenchImage, r: int, measure: str, drop: bool) -> None:
        """The same cold pull as ``pull_ctrstore``, by the ordinary user into its own store
        (on the same ext4); its namespace's pause process is kept (as a user's is between
        commands), so the time is the pull's, not the namespace's making."""
        u = self.rootless
        assert u is not None and not drop
        remove_tree(u.root)
        for entry in u.state.iterdir() if u.state.is_dir() else []:
            if not entry.name.startswith("pause."):
                remove_tree(entry)
        self.settle()
        p = timed(
            self.rootless_cli("pull", "--plain-http", "--plain", img.ref),
            self.log(f"{img.key}-rl-cold-{r}.log"),
            rss=True,
        )
        rss = p.maxrss_kb * 1024 / MB
        print(f"    rootless   {COLD_ROOTLESS}: {p.elapsed:6.2f} s, peak RSS {rss:.0f} MB", flush=True)
        if p.rc != 0:
            self.fail(f"{img.key}: rootless cold pull: {p.describe()}")
            return
        self.add(img.key, COLD_ROOTLESS, CTRSTORE, p.elapsed, rss)
        if "up to date" in p.out:
            self.fail(f"{img.key}: the rootless cold pull says the image was up to date")
        self.verify_rootless(img)

    def verify_rootless(self, img: BenchImage) -> None:
        """Every layer blob is in the user's store, one snapshot per layer, and the image's
        root directory belongs to the user on disk (its uid 0 is the user)."""
        u = self.rootless
        assert u is not None
        blobs = u.root / "io.containerd.content.v1.content/blobs"
        missing = [d for d in img.layer_digests if not (blobs / d.replace(":", "/")).is_file()]
        if missing:
            self.fail(f"{img.key}: rootless pull: layer blobs missing: {missing}")
        snaps = [
            d
            for sn in ("overlayfs", "native")
            for d in (u.root / f"io.containerd.snapshotter.v1.{sn}/snapshots").glob("*")
            if d.is_dir()
        ]
        if len(snaps) != len(img.layer_digests):
            self.fail(f"{img.key}: rootless pull: {len(snaps)} snapshots for {len(img.layer_digests)} layers")
        owners = {(d / "fs").stat().st_uid if (d / "fs").is_dir() else d.stat().st_uid for d in snaps}
        if owners - {u.uid}:
            self.fail(f"{img.key}: rootless pull: snapshot roots owned by {owners}, not only {u.uid}")

    def pulls(self, img: BenchImage, rounds: int, measure: str, drop: bool) -> None:
        tools = [self.pull_ctrstore, self.pull_containerd]
        if self.rootless is not None and measure == COLD and not drop:
            tools.append(self.pull_rootless)
        for r in range(rounds):
            print(f"  {img.key}, {measure}, round {r + 1}/{rounds}", flush=True)
            order = tools[r % len(tools) :] + tools[: r % len(tools)]
            for fn in order:
                fn(img, r, measure, drop)

    # -- over a link: download only, pull, containerd's pull
    def link_pulls(self, img: BenchImage, rounds: int) -> None:
        assert self.registry is not None
        for rate in LINK_RATES:
            measure = link_measure(rate)
            self.link = Link(self.registry, rate)
            self.link.start()
            try:
                ref = self.link.ref(img)
                kinds = ["download", "pull", "containerd"]
                for r in range(rounds):
                    print(f"  {img.key}, {measure}, round {r + 1}/{rounds}", flush=True)
                    for kind in kinds[r % 3 :] + kinds[: r % 3]:
                        if kind == "containerd":
                            self.link_containerd(img, ref, r, measure)
                        else:
                            self.link_ctrstore(img, ref, r, measure, download_only=kind == "download")
            finally:
                self.link.stop()
                self.link = None

    def link_ctrstore(self, img: BenchImage, ref: str, r: int, measure: str, *, download_only: bool) -> None:
        from ctrstore import Client

        cs = self.ctrstore
        assert cs is not None
        cs.wipe()
        self.settle()
        tool = CTRSTORE_DOWNLOAD if download_only else CTRSTORE
        args = ["pull", "--plain-http", "--plain", *(["--no-unpack"] if download_only else []), ref]
        tag = "dl" if download_only else "pull"
        p = timed(cs.cli(*args), self.log(f"{img.key}-cs-link-{tag}-{measure.split()[4]}-{r}.log"), rss=True)
        rss = p.maxrss_kb * 1024 / MB
        print(f"    {tool:<10} {measure}: {p.elapsed:6.2f} s, peak RSS {rss:.0f} MB", flush=True)
        if p.rc != 0:
            self.fail(f"{img.key}: {tool} {measure}: {p.describe()}")
            return
        self.add(img.key, measure, tool, p.elapsed, rss)
        client = Client(root=cs.root, state=cs.state, namespace=NAMESPACE)
        try:
            check = client.check(ref)
            if not check.complete or check.unpacked == download_only:
                self.fail(f"{img.key}: {tool} {measure}: complete={check.complete} unpacked={check.unpacked}")
        finally:
            client.close()

    def link_containerd(self, img: BenchImage, ref: str, r: int, measure: str) -> None:
        cd = self.containerd
        assert cd is not None
        cd.restart_empty()
        self.settle()
        p = timed(
            cd.ctr("images", "pull", "--plain-http", ref),
            self.log(f"{img.key}-cd-link-{measure.split()[4]}-{r}.log"),
            rss=True,
        )
        rss = (cd.peak_rss_kb() + p.maxrss_kb) * 1024 / MB
        print(f"    containerd {measure}: {p.elapsed:6.2f} s, peak RSS daemon + ctr {rss:.0f} MB", flush=True)
        if p.rc != 0:
            self.fail(f"{img.key}: ctr images pull {measure}: {p.describe()}")
            return
        self.add(img.key, measure, CONTAINERD, p.elapsed, rss)
        if cd.image_digest(ref) != img.digest:
            self.fail(f"{img.key}: containerd holds {ref} as {cd.image_digest(ref) or 'nothing'}")

    # -- checks after the last round (both stores hold the image)
    def verify(self, img: BenchImage) -> None:
        from ctrstore import Client

        cs, cd = self.ctrstore, self.containerd
        assert cs is not None and cd is not None and self.tmp is not None
        got = cd.image_digest(img.ref)
        if got != img.digest:
            self.fail(f"{img.key}: containerd holds {img.ref} as {got or 'nothing'}, pushed {img.digest}")
        client = Client(root=cs.root, state=cs.state, namespace=NAMESPACE)
        a, b = self.tmp / "mnt-ctrstore", self.tmp / "mnt-containerd"
        a.mkdir(exist_ok=True)
        b.mkdir(exist_ok=True)
        try:
            image = client.images.get(img.ref)
            if image.target.digest != img.digest:
                self.fail(
                    f"{img.key}: ctrstore holds {img.ref} as {image.target.digest}, pushed {img.digest}"
                )
            check = client.check(img.ref)
            if not (check.complete and check.unpacked):
                self.fail(f"{img.key}: ctrstore's image: complete={check.complete} unpacked={check.unpacked}")
            client.mount_image(img.ref, a)
            try:
                quiet(cd.ctr("images", "mount", img.ref, str(b)))
                try:
                    want = apply.Expected.of(b, 1 if not img.big else 25)
                    problems = apply.compare(a, want)
                    for p in problems:
                        self.fail(f"{img.key}: ctrstore's rootfs differs from containerd's: {p}")
                    print(
                        f"  {img.key}: same digest in both stores; rootfs of {len(want.entries)} entries "
                        f"{'identical' if not problems else 'DIFFERS'} "
                        f"(content of {len(want.contents)} files compared)",
                        flush=True,
                    )
                finally:
                    quiet(cd.ctr("images", "unmount", "--rm", str(b)), check=False)
                    unmount_under(b)
            finally:
                client.unmount_image(a)
        finally:
            client.close()

    # -- sha256 of the layer blobs
    def sha256(self, img: BenchImage, rounds: int) -> None:
        cs = self.ctrstore
        assert cs is not None
        blobs = [cs.blob(d) for d in img.layer_digests]
        if not all(b.exists() for b in blobs):
            self.fail(f"{img.key}: layer blobs missing from ctrstore's content store")
            return
        for b in blobs:
            apply.read_all(b)  # page cache warm
        tools = [(SHA_CTRSTORE, by_ctrstore), (SHA_COREUTILS, by_sha256sum)]
        for r in range(rounds):
            order = tools[r % 2 :] + tools[: r % 2]
            for name, fn in order:
                t0 = time.perf_counter()
                digests = [fn(b) for b in blobs]
                self.add(img.key, SHA, name, time.perf_counter() - t0)
                if digests != img.layer_digests:
                    self.fail(f"{img.key}: {name} computed other digests than the layers': {digests}")
        med = {n: statistics.median(self.series[(img.key, SHA, n)].values) for n, _ in tools}
        print(
            f"  {img.key}: sha256 of {img.compressed / MB:.0f} MB: "
            + ", ".join(f"{k} {v:.3f} s" for k, v in med.items())
        )

    # -- run --rm true
    def run_true(self, img: BenchImage, rounds: int) -> None:
        cs, cd = self.ctrstore, self.containerd
        assert cs is not None and cd is not None
        for r in range(rounds):
            starts = [(CTRSTORE, cs.cli("--version")), (CONTAINERD, ["ctr", "--version"])]
            for tool, cmd in starts[r % 2 :] + starts[: r % 2]:
                p = timed(cmd, self.log(f"version-{tool.split()[0]}-{r}.log"))
                if p.rc == 0:
                    self.add(img.key, START, tool, p.elapsed)
            runs = [
                # (ctr run gives a namespace with loopback only: so does --network none)
                (CTRSTORE, cs.cli("run", "--rm", "--network", "none", img.ref, "true")),
                (
                    CONTAINERD,
                    cd.ctr(
                        "run", "--rm", "--runc-root", str(cd.runc_root), img.ref, f"suite-run-{r}", "true"
                    ),
                ),
            ]
            order = runs[r % 2 :] + runs[: r % 2]
            for tool, cmd in order:
                p = timed(cmd, self.log(f"run-{tool.split()[0]}-{r}.log"))
                print(f"    {tool:<10} {RUN}: {p.elapsed:6.3f} s (exit {p.rc})", flush=True)
                if p.rc != 0:
                    self.fail(f"{img.key}: {tool} run --rm true: {p.describe()}")
                    continue
                self.add(img.key, RUN, tool, p.elapsed)
        left = quiet(cd.ctr("containers", "ls", "-q"), check=False).stdout.split()
        if left:
            self.fail(f"containerd still lists containers after run --rm: {left}")
        left = quiet(cs.cli("containers", "ls", "-q"), check=False).stdout.split()
        if left:
            self.fail(f"ctrstore still lists containers after run --rm: {left}")

    # -- fan-out: N nodes pull one image, each from the registry or through the first one
    def fanout(self, img: BenchImage, rounds: int) -> None:
        """``self.fan_nodes`` nodes (roots on the loop fs, each with ``ctrstore serve`` on its
        own 127.0.0.x) pull ``img`` without unpacking, two ways, alternating: all at once
        from the registry; or the first from the registry and then the others at once
        through it (hosts.toml: the first node's serve as a mirror, the registry last). The
        registry here is a second docker-registry on the same storage, with its access log
        on, so that the bytes it sent can be summed (the other measurements' registry logs
        nothing). Measured: the wall time until every node holds the image, and those bytes."""
        assert self.registry is not None
        up = start_registry(self.fs_path("registry-fanout"), data=self.registry.data, access_log=True)
        try:
            ref = img.ref.replace(self.registry.host, up.host, 1)
            modes = [(FAN_DIRECT, self._fan_direct), (FAN_PEERS, self._fan_peers)]
            for r in range(rounds):
                print(f"  {img.key}, fan-out to {self.fan_nodes} nodes, round {r + 1}/{rounds}", flush=True)
                for tool, fn in modes[r % 2 :] + modes[: r % 2]:
                    nodes = self._fan_start(r)
                    try:
                        self.settle()
                        mark = up.log_size()
                        t0 = time.perf_counter()
                        outs = fn(nodes, up.host, ref, r)
                        elapsed = time.perf_counter() - t0
                        time.sleep(0.3)  # the registry logs each answer just after it
                        sent = up.sent_since(mark)
                        ok = outs is not None and self._fan_verify(img, nodes, ref, outs, tool, sent)
                    finally:
                        self._fan_stop(nodes)
                    print(f"    {tool}: {elapsed:6.2f} s, the registry sent {sent / MB:.1f} MB", flush=True)
                    if ok:
                        self.add(img.key, FANOUT, tool, elapsed)
                        self.add(img.key, FANOUT_MB, tool, sent / MB)
        finally:
            stop_registry(up)

    def fs_path(self, name: str) -> Path:
        assert self.fs is not None
        return self.fs / name

    def _fan_start(self, r: int) -> list[FanNode]:
        """Empty node stores, each with its ``ctrstore serve`` listening."""
        assert self.tmp is not None
        nodes = []
        for i in range(self.fan_nodes):
            cs = Ctrstore(self.fs_path("fanout") / f"node{i}", self.tmp / "fanout" / f"node{i}-state")
            cs.wipe()
            quiet(cs.cli("namespaces", "create", NAMESPACE))  # serve wants it to exist
            log = self.log(f"fanout-serve-{i}-{r}.log")
            with open(log, "wb") as f:
                proc = subprocess.Popen(
                    cs.cli("serve", "--addr", f"127.0.0.{41 + i}:0", "--access-log", str(log) + ".access"),
                    stdout=subprocess.DEVNULL,
                    stderr=f,
                    stdin=subprocess.DEVNULL,
                )
            nodes.append(FanNode(cs, proc, log))
        deadline = time.monotonic() + 30
        for node in nodes:
            while not node.url:
                m = re.search(r" on (http://127\.0\.0\.\d+:\d+) ", node.log.read_text())
                if m:
                    node.url = m.group(1)
                elif node.proc.poll() is not None or time.monotonic() > deadline:
                    self._fan_stop(nodes)
                    raise Failure(f"ctrstore serve did not start: {node.log.read_text()[-800:]}")
                else:
                    time.sleep(0.05)
        return nodes

    def _fan_stop(self, nodes: list[FanNode]) -> None:
        for node in nodes:
            if node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(20)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    def _fan_pull(self, nodes: list[FanNode], args: list[list[str]], tag: str) -> list[str] | None:
        """``ctrstore pull --plain --no-unpack ARGS`` on each node at once; their outputs, or
        None (and a failure) if one failed."""
        procs: list[tuple[subprocess.Popen[bytes], IO[bytes], Path]] = []
        for node, a in zip(nodes, args, strict=True):
            log = self.log(f"fanout-pull-{tag}-{node.cs.root.name}.log")
            f = open(log, "wb")  # noqa: SIM115 - closed below, after the process
            cmd = node.cs.cli("pull", "--plain", "--no-unpack", *a)
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            procs.append((p, f, log))
        outs: list[str] = []
        failed = False
        for proc, out_file, log in procs:
            try:
                rc = proc.wait(600)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            out_file.close()
            out = log.read_text(errors="replace")
            if rc != 0:
                self.fail(f"fan-out: {log.name}: `ctrstore pull` exited {rc}: {out.strip()[-400:]}")
                failed = True
            outs.append(out)
        return None if failed else outs

    def _fan_direct(self, nodes: list[FanNode], registry: str, ref: str, r: int) -> list[str] | None:
        return self._fan_pull(nodes, [["--plain-http", ref]] * len(nodes), f"direct-{r}")

    def _fan_peers(self, nodes: list[FanNode], registry: str, ref: str, r: int) -> list[str] | None:
        assert self.tmp is not None
        hosts = []
        for i in range(len(nodes)):
            hd = self.tmp / "fanout" / f"node{i}-certs.d-{r}"
            (hd / registry).mkdir(parents=True, exist_ok=True)
            mirror = f'\n[host."{nodes[0].url}"]\n  capabilities = ["pull", "resolve"]\n' if i else ""
            (hd / registry / "hosts.toml").write_text(f'server = "http://{registry}"\n{mirror}')
            hosts.append(["--hosts-dir", str(hd), ref])
        first = self._fan_pull(nodes[:1], hosts[:1], f"peers-{r}")
        rest = self._fan_pull(nodes[1:], hosts[1:], f"peers-{r}") if first is not None else None
        return None if first is None or rest is None else first + rest

    def _fan_verify(
        self, img: BenchImage, nodes: list[FanNode], ref: str, outs: list[str], tool: str, sent: int
    ) -> bool:
        """Every node holds the whole image; the registry sent it once per node pulling from
        it; through peers, every blob of the later nodes came from the first."""
        from ctrstore import Client

        failures = len(self.failures)
        image_bytes = 0
        for i, node in enumerate(nodes):
            c = Client(root=node.cs.root, state=node.cs.state, namespace=NAMESPACE)
            try:
                got = c.images.get(ref).target.digest
                if got != img.digest or not c.check(ref).complete:
                    self.fail(
                        f"fan-out ({tool}): node {i} holds {ref} as {got}, incomplete or not {img.digest}"
                    )
                if i == 0:
                    image_bytes = sum(info.size for info in c.content.walk())
            finally:
                c.close()
        from_registry = len(nodes) if tool == FAN_DIRECT else 1
        if sent != from_registry * image_bytes:
            self.fail(
                f"fan-out ({tool}): the registry sent {sent} bytes, not {from_registry} x {image_bytes} "
                "(each blob once per node pulling from it)"
            )
        if tool == FAN_PEERS:
            seed = nodes[0].url.removeprefix("http://")
            for i, out in enumerate(outs[1:], 1):
                where = set(re.findall(r": downloading from (.+)$", out, re.M))
                if where != {seed}:
                    self.fail(f"fan-out: node {i}'s blobs came from {where or 'nowhere'}, not only {seed}")
        self.image_bytes[img.key] = image_bytes
        return len(self.failures) == failures

    def link_image(self) -> str:
        """The image pulled over the link: the big gzip one, or the small one in quick mode."""
        return "small-gzip" if self.quick else "usr-gzip"

    # -- the whole thing
    def run(self) -> int:
        self.setup()
        self.build_images()
        assert self.containerd is not None
        self.containerd.start()
        for img in self.images:
            print(f"{img.label}: {img.ref}", flush=True)
            self.pulls(img, self.rounds, COLD, False)
            if img.big and self.drop_rounds:
                self.pulls(img, self.drop_rounds, COLD_DROPPED, True)
            if self.failures and self.args.check:
                break
            self.verify(img)
            self.sha256(img, self.rounds if not img.big else max(self.rounds, 3))
            if img.key == self.link_image():
                self.link_pulls(img, self.rounds)
            if img.key == "busybox":
                self.run_true(img, self.run_rounds)
        fan = next(
            (i for i in self.images if i.key == ("usr-gzip" if not self.quick else "small-gzip")), None
        )
        if fan is not None and not (self.failures and self.args.check):
            self.fanout(fan, self.rounds if not self.args.check else 1)
        return 0


# --------------------------------------------------------------------------------------------
# The report


def med(s: Series | None) -> float | None:
    return statistics.median(s.values) if s is not None and s.values else None


@dataclass
class Verdict:
    what: str
    value: str
    target: str
    met: bool | None  # None: not measured


def verdicts(suite: Suite) -> list[Verdict]:
    out: list[Verdict] = []
    big = [i for i in suite.images if i.big] or [i for i in suite.images if i.key.startswith("small")]
    label = "" if any(i.big for i in suite.images) else " (quick mode: on the small image, indicative only)"
    for img in big:
        cs, cd = suite.series.get((img.key, COLD, CTRSTORE)), suite.series.get((img.key, COLD, CONTAINERD))
        a, b = med(cs), med(cd)
        if a is not None and b is not None:
            ratio = a / b
            out.append(
                Verdict(
                    f"{img.label}: cold pull + unpack vs containerd{label}",
                    f"{ratio:.2f}x ({a:.2f} s vs {b:.2f} s)",
                    f"≤ {TARGET_COLD_RATIO}x",
                    ratio <= TARGET_COLD_RATIO,
                )
            )
        else:
            out.append(
                Verdict(f"{img.label}: cold pull + unpack", "not measured", f"≤ {TARGET_COLD_RATIO}x", None)
            )
        w = med(suite.series.get((img.key, WARM, CTRSTORE)))
        out.append(
            Verdict(
                f"{img.label}: warm re-pull{label}",
                "not measured" if w is None else f"{w:.3f} s",
                f"< {TARGET_WARM_S} s",
                None if w is None else w < TARGET_WARM_S,
            )
        )
        rss = [
            x
            for m in (COLD, COLD_DROPPED, *LINKS)
            if (s := suite.series.get((img.key, m, CTRSTORE)))
            for x in s.extra
        ]
        peak = max(rss) if rss else None
        out.append(
            Verdict(
                f"{img.label}: peak RSS of `ctrstore pull` (max over runs){label}",
                "not measured" if peak is None else f"{peak:.0f} MB",
                f"< {TARGET_RSS_MB:.0f} MB",
                None if peak is None else peak < TARGET_RSS_MB,
            )
        )
    out += link_verdicts(suite)
    a = med(suite.series.get(("busybox", RUN, CTRSTORE)))
    b = med(suite.series.get(("busybox", RUN, CONTAINERD)))
    if a is not None and b is not None:
        out.append(
            Verdict(
                "busybox: `ctrstore run --rm IMAGE true` vs `ctr run --rm`",
                f"{a / b:.2f}x ({a:.3f} s vs {b:.3f} s)",
                f"≤ {TARGET_RUN_RATIO}x",
                a / b <= TARGET_RUN_RATIO,
            )
        )
    else:
        out.append(Verdict("busybox: run --rm true", "not measured", f"≤ {TARGET_RUN_RATIO}x", None))
    for img in suite.images:
        peers = med(suite.series.get((img.key, FANOUT_MB, FAN_PEERS)))
        direct = med(suite.series.get((img.key, FANOUT_MB, FAN_DIRECT)))
        size = suite.image_bytes.get(img.key)
        if peers is None or direct is None or not size:
            continue
        once = peers * MB / size
        out.append(
            Verdict(
                f"{img.label}: fan-out to {suite.fan_nodes} nodes through peers, bytes the registry sent",
                f"{once:.2f}x the image ({peers:.1f} MB; without peers {direct * MB / size:.2f}x)",
                "1.00x (each blob leaves the registry once)",
                round(once, 6) == 1.0,
            )
        )
    return out


def link_verdicts(suite: Suite) -> list[Verdict]:
    """Over the 50 MB/s link: ctrstore's pull against its own download alone, and against
    containerd's pull."""
    key = suite.link_image()
    img = next((i for i in suite.images if i.key == key), None)
    measure = link_measure(TARGET_LINK_RATE)
    what = f"{img.label if img else key}: pull over a {TARGET_LINK_RATE} MB/s link"
    if suite.quick:
        what += " (quick mode: on the small image, indicative only)"
    pull = med(suite.series.get((key, measure, CTRSTORE)))
    download = med(suite.series.get((key, measure, CTRSTORE_DOWNLOAD)))
    cd = med(suite.series.get((key, measure, CONTAINERD)))
    out = []
    for label, anchor, target in (
        ("vs ctrstore's download alone (--no-unpack)", download, TARGET_LINK_DOWNLOAD_RATIO),
        ("vs containerd", cd, TARGET_LINK_RATIO),
    ):
        if pull is None or anchor is None:
            out.append(Verdict(f"{what} {label}", "not measured", f"≤ {target}x", None))
        else:
            out.append(
                Verdict(
                    f"{what} {label}",
                    f"{pull / anchor:.2f}x ({pull:.2f} s vs {anchor:.2f} s)",
                    f"≤ {target}x",
                    pull / anchor <= target,
                )
            )
    return out


def versions() -> str:
    containerd = quiet(["containerd", "--version"], check=False).stdout.split()
    runc = quiet(["runc", "--version"], check=False).stdout.split()
    cd = containerd[2] if len(containerd) > 2 else "?"
    return f"containerd {cd}, runc {runc[2] if len(runc) > 2 else '?'}"


def render(suite: Suite, elapsed: float) -> str:
    mode = "check" if suite.args.check else ("quick" if suite.quick else "full")
    lines = [
        f"### ctrstore vs containerd: pull, re-pull, sha256, run ({mode} mode)",
        "",
        f"{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; {versions()}. "
        f"The registry's storage and the roots of both tools on one fresh loop-mounted ext4 "
        f"({'4' if suite.quick else '16'} GiB sparse file); containerd's state and socket, "
        f"ctrstore's state in a temporary directory on /run. "
        f"{suite.rounds} round{'s' * (suite.rounds != 1)} per image "
        f"(+{suite.drop_rounds} with the page cache dropped before each cold pull of the big images; "
        f"{suite.run_rounds} of run), the tools alternating within each round, the order rotated "
        "each round. Cold: an empty store (ctrstore's root and state removed; containerd restarted "
        "on an empty root), page cache warm unless said. Times are the wall clock of the CLI "
        "process (`ctrstore ...` starts Python each time; `ctr` talks to the running daemon). "
        f"The whole run took {elapsed / 60:.1f} min. " + load_note(suite),
        "",
        "Commands: `ctrstore --root R --state S -n NS pull --plain-http --plain REF` vs "
        "`ctr --address SOCK -n NS images pull --plain-http REF`; `ctrstore ... run --rm REF true` vs "
        "`ctr ... run --rm --runc-root DIR REF ID true` (runc both); `ctrstore.sha256_file` vs "
        "`sha256sum` per layer blob. Rootless: the same `ctrstore pull` as an ordinary user made "
        "for the run (`setpriv`, Debian's python3 in a venv; its store on the same ext4, its "
        "namespace's pause process kept between rounds), against root's pull. "
        "Peak RSS: ctrstore's pull process (GNU time's `%M`); for "
        "containerd the daemon's VmHWM since its start just before the pull, plus `ctr`'s. ctrstore is "
        "byte-compiled first (`compileall`, as `pip install` does: these machines set "
        "`PYTHONDONTWRITEBYTECODE`, and without `__pycache__` every CLI call compiles ~70 modules, "
        "~90 ms). Unpack alone (ctrstore's `apply_layer` vs GNU "
        "tar): `python -m benches apply`, `benches/results/apply.md`.",
        "",
        f"Over a link: the registry behind `benches.link` at {' and '.join(map(str, LINK_RATES))} MB/s "
        "(a TCP proxy whose connections share one token bucket for what the registry sends, as a "
        "machine's connections share its link), in its own process; the three pulls of "
        f"{suite.link_image()} (`ctrstore pull --no-unpack`, `ctrstore pull`, `ctr images pull`) "
        "alternate, the order rotated each round; cold as above.",
        "",
        "| image | layers | compressed MB | uncompressed MB | entries | digest |",
        "|---|---|---|---|---|---|",
    ]
    for img in suite.images:
        lines.append(
            f"| {img.label} | {len(img.layer_digests)} | {img.compressed / MB:.1f} "
            f"| {img.uncompressed / MB:.1f} | {img.entries} | `{img.digest[:19]}…` |"
        )
    lines += [
        "",
        "| image | measurement | tool | min s | median s | max s | vs anchor (median) | peak RSS MB (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    anchors = {
        COLD: CONTAINERD,
        COLD_DROPPED: CONTAINERD,
        WARM: CONTAINERD,
        RUN: CONTAINERD,
        START: CONTAINERD,
        SHA: SHA_COREUTILS,
        **{m: CONTAINERD for m in LINKS},
    }
    for img in suite.images:
        for measure in (COLD, COLD_DROPPED, COLD_ROOTLESS, WARM, SHA, RUN, START, *LINKS):
            for tool in (CTRSTORE_DOWNLOAD, CTRSTORE, CONTAINERD, SHA_CTRSTORE, SHA_COREUTILS):
                s = suite.series.get((img.key, measure, tool))
                if s is None or not s.values:
                    continue
                # the rootless pull against root's pull of the same image
                anchor_key = (COLD, CTRSTORE) if measure == COLD_ROOTLESS else (measure, anchors[measure])
                anchor = med(suite.series.get((img.key, *anchor_key)))
                m = statistics.median(s.values)
                if (measure, tool) == anchor_key:
                    vs = "1.00 (anchor)"
                elif anchor:
                    vs = f"{m / anchor:.2f}"
                else:
                    vs = ""
                rss = f"{max(s.extra):.0f}" if s.extra else ""
                lines.append(
                    f"| {img.label} | {measure} | {tool} | {min(s.values):.3f} | {m:.3f} "
                    f"| {max(s.values):.3f} | {vs} | {rss} |"
                )
    fan = [i for i in suite.images if (i.key, FANOUT, FAN_PEERS) in suite.series]
    if fan:
        lines += [
            "",
            f"Fan-out: {suite.fan_nodes} nodes (stores on the loop fs, each with `ctrstore serve` on its own "
            "127.0.0.x) pull the image without unpacking (`ctrstore pull --no-unpack`), each time into "
            "empty stores: *all from the registry* at once, or *through peers*: the first node from the "
            "registry, then the others at once with the first node's `ctrstore serve` as their mirror "
            "(hosts.toml `[host]`, the registry as `server`). Total: until every node holds the image. "
            "MB: what the registry sent (the GETs of its access log; the image is "
            + ", ".join(f"{suite.image_bytes.get(i.key, 0) / MB:.1f} MB" for i in fan)
            + "). On one loopback the registry is not a bottleneck; between machines its uplink is.",
            "",
            "| image | how | min s | median s | max s | vs anchor (median) | registry sent MB (median) |",
            "|---|---|---|---|---|---|---|",
        ]
        for img in fan:
            anchor = med(suite.series.get((img.key, FANOUT, FAN_DIRECT)))
            for tool in (FAN_DIRECT, FAN_PEERS):
                s = suite.series.get((img.key, FANOUT, tool))
                b = med(suite.series.get((img.key, FANOUT_MB, tool)))
                if s is None or not s.values:
                    continue
                m = statistics.median(s.values)
                vs = "1.00 (anchor)" if tool == FAN_DIRECT else (f"{m / anchor:.2f}" if anchor else "")
                lines.append(
                    f"| {img.label} | {tool} | {min(s.values):.3f} | {m:.3f} | {max(s.values):.3f} | {vs} "
                    f"| {b:.1f} |"
                )
    lines += ["", "Targets:", ""]
    for v in verdicts(suite):
        state = "not measured" if v.met is None else ("**met**" if v.met else "**MISSED**")
        lines.append(f"- {v.what}: {v.value}, target {v.target}: {state}")
    lines += [
        "",
        "Correctness: "
        + (
            "all checks passed"
            if not suite.failures
            else f"{len(suite.failures)} FAILURES: " + "; ".join(suite.failures[:10])
        ),
        "",
    ]
    return "\n".join(lines)


def load_note(suite: Suite) -> str:
    if not suite.loads:
        return ""
    lo, mid, hi = min(suite.loads), statistics.median(suite.loads), max(suite.loads)
    return (
        f"1-minute load average at the measurements: min {lo:.1f}, median {mid:.1f}, max {hi:.1f} "
        f"on {os.cpu_count()} CPUs (above the CPU count, other work competed with the tools measured)."
    )


def chart(suite: Suite, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        print("note: matplotlib is not installed (./scripts/setup --bench); no chart", flush=True)
        return False
    panels = [
        m
        for m in (COLD, COLD_DROPPED, COLD_ROOTLESS, *LINKS, WARM, SHA, RUN, START, FANOUT, FANOUT_MB)
        if any(k[1] == m for k in suite.series)
    ]
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    colors = {
        CTRSTORE_DOWNLOAD: "#9cc5e6",
        CTRSTORE: "#2a7ab9",
        SHA_CTRSTORE: "#2a7ab9",
        FAN_PEERS: "#2a7ab9",
        CONTAINERD: "#d9822b",
        SHA_COREUTILS: "#d9822b",
        FAN_DIRECT: "#d9822b",
    }
    for ax, measure in zip(axes.flat, panels, strict=False):
        imgs = [i for i in suite.images if any(k[0] == i.key and k[1] == measure for k in suite.series)]
        tools = [
            t
            for t in (
                CTRSTORE_DOWNLOAD,
                CTRSTORE,
                CONTAINERD,
                SHA_CTRSTORE,
                SHA_COREUTILS,
                FAN_DIRECT,
                FAN_PEERS,
            )
            if any(k[1] == measure and k[2] == t for k in suite.series)
        ]
        width = 0.8 / max(1, len(tools))
        for j, tool in enumerate(tools):
            xs, ys, lo, hi = [], [], [], []
            for i, img in enumerate(imgs):
                s = suite.series.get((img.key, measure, tool))
                if s is None or not s.values:
                    continue
                m = statistics.median(s.values)
                xs.append(i + (j - (len(tools) - 1) / 2) * width)
                ys.append(m)
                lo.append(m - min(s.values))
                hi.append(max(s.values) - m)
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=tool, color=colors[tool])
        ax.set_xticks(range(len(imgs)))
        ax.set_xticklabels([i.key for i in imgs], rotation=20)
        ax.set_title(measure, fontsize=9)
        ax.set_ylabel("MB (median, min-max)" if measure == FANOUT_MB else "seconds (median, min-max)")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"ctrstore vs containerd 1.6 on {platform.node()} ({time.strftime('%Y-%m-%d')})", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Entry point


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the cleanup runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("this benchmark needs root (loop mounts, containerd, containers)")
        return 2
    t0 = time.monotonic()
    suite = Suite(args)
    crashed: str | None = None
    with terminate_as_exit():
        try:
            suite.run()
        except (Failure, subprocess.SubprocessError, OSError) as e:
            crashed = f"{type(e).__name__}: {e}"
        except KeyboardInterrupt as e:
            crashed = f"interrupted ({e or 'Ctrl-C'})"
        except Exception as e:
            crashed = f"{type(e).__name__}: {e}"
            import traceback

            traceback.print_exc()
        finally:
            print("cleaning up ...", flush=True)
            # a second signal must not cut the cleanup short
            with contextlib.suppress(KeyboardInterrupt):
                suite.teardown()
    elapsed = time.monotonic() - t0
    if crashed:
        suite.failures.append(f"the suite stopped: {crashed}")
    report = render(suite, elapsed)
    print()
    print(report)
    if not args.check and not crashed:
        RESULTS.mkdir(exist_ok=True)
        name = "suite" if not suite.quick else "suite-quick"
        (RESULTS / f"{name}.md").write_text(report)
        if chart(suite, RESULTS / f"{name}.png"):
            print(f"wrote {RESULTS / name}.md and .png")
    print(f"suite: {len(suite.failures)} correctness failure(s); {elapsed:.0f} s", flush=True)
    return 1 if suite.failures else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "suite", help="ctrstore vs containerd: pull, re-pull, sha256, RSS, run (sets up everything)"
    )
    p.add_argument("--quick", action="store_true", help="busybox and the small image only, 2 rounds (CI)")
    p.add_argument("--check", action="store_true", help="quick mode once; correctness only; writes nothing")
    p.add_argument("--rounds", type=int, help="rounds per image (default 5; 2 with --quick; 1 with --check)")
    p.add_argument(
        "--drop-rounds", type=int, help="extra cold rounds with the page cache dropped (full; default 3)"
    )
    p.add_argument(
        "--cache",
        default=str(apply.DEFAULT_CACHE),
        help=f"where the /usr layers are kept and the loop file is made (default {apply.DEFAULT_CACHE})",
    )
    p.set_defaults(func=run)
