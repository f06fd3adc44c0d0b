"""Layer application: ctrstore's ``apply_layer`` against GNU tar on a realistic 4-layer image made
from this machine's own ``/usr`` (tens of thousands of files, a few hundred MB), with gzip and
zstd layers. Targets: ctrstore's time at most 0.7x ``pigz -dc | tar -x`` (gzip) and 0.8x
``tar --zstd -x`` (zstd); the floor is GNU ``tar -x`` of the already-decompressed layers.

Every timed run writes into a fresh directory on one loop-mounted ext4 made for the run (see
``/work/shared/design/benchmarking.md``: on ``/`` an unpack benchmark mostly measures that
disk). ctrstore runs two ways: *sequential* (the layers one after the other into one tree,
``whiteouts="delete"``, like the native snapshotter) and *parallel* (each layer into its own
directory, ``whiteouts="overlay"``, like the overlay snapshotter, two layers at a time on two
threads). Times are wall clock without a ``sync``; a separate column adds the ``syncfs`` of the
loop file system right after the run. Every run is verified: ctrstore's diff_ids against the
sha256 of the plain tars, and every tree against a reference extracted with GNU tar (names,
types, modes, sizes, owners, symlink targets, devices, directory xattrs, and the content of a
sample of files).

    python -m benches apply [--rounds 3] [--cache /var/tmp/ctrstore-bench] [--drop-caches]
    python -m benches apply --check    # tiny image on /, full comparison, writes nothing
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import shutil
import stat
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from benches.sha256 import by_hashlib
from ctrstore.archive import ApplyStats, apply_layer

RESULTS = Path(__file__).parent / "results"
DEFAULT_CACHE = Path("/var/tmp/ctrstore-bench")
TARGETS = {"gzip": 0.7, "zstd": 0.8}
IMAGE_VERSION = 2
WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
TAR_CREATE = [
    "tar",
    "-c",
    "--format=pax",
    "--numeric-owner",
    "--pax-option=delete=atime,delete=ctime",
    "--no-recursion",
    "--null",
    "--verbatim-files-from",
]
TAR_EXTRACT = ["tar", "-x", "--numeric-owner"]
MB = 1e6
SETTLE = 1.0  # seconds of quiet before each timed run on the loop file system

# --------------------------------------------------------------------------------------------
# The image


@dataclass(frozen=True)
class LayerSpec:
    """Files taken from directories under ``/`` in path order, up to a count and a size."""

    what: str
    sources: tuple[str, ...]
    max_files: int
    max_bytes: int
    min_file_size: int = 0


@dataclass(frozen=True)
class ImageSpec:
    name: str
    layers: tuple[LayerSpec, LayerSpec, LayerSpec]
    whiteout_every: int  # whiteout every n-th regular file of layer 1
    modify_every: int  # modify every n-th regular file of layer 1 (and a few of layers 2, 3)
    new_files: int  # new small files in layer 4


FULL = ImageSpec(
    "full",
    (
        LayerSpec(
            "small files",
            ("usr/share/doc", "usr/share/zoneinfo", "usr/share/i18n", "usr/share/man"),
            25_000,
            300 << 20,
        ),
        LayerSpec("large files", ("usr/lib/x86_64-linux-gnu",), 25_000, 200 << 20, min_file_size=256 << 10),
        LayerSpec(
            "more files",
            ("usr/include", "usr/lib/python3.11", "usr/share/vim", "usr/share/perl"),
            15_000,
            200 << 20,
        ),
    ),
    whiteout_every=500,
    modify_every=2_500,
    new_files=200,
)

CHECK = ImageSpec(
    "check",
    (
        LayerSpec("small files", ("usr/share/doc",), 300, 20 << 20),
        LayerSpec("large files", ("usr/lib/x86_64-linux-gnu",), 8, 16 << 20, min_file_size=256 << 10),
        LayerSpec("more files", ("usr/share/zoneinfo",), 150, 10 << 20),
    ),
    whiteout_every=20,
    modify_every=40,
    new_files=10,
)


@dataclass
class Layer:
    what: str
    tar: Path
    gz: Path
    zst: Path
    members: list[str]
    files: int
    dirs: int
    symlinks: int
    tar_bytes: int
    gz_bytes: int
    zst_bytes: int
    diff_id: str = ""

    def path(self, compression: str) -> Path:
        return {"uncompressed": self.tar, "gzip": self.gz, "zstd": self.zst}[compression]


@dataclass
class Image:
    layers: list[Layer]
    whiteouts: list[str]  # paths the whiteouts of layer 4 delete
    opaque: list[str]  # directories layer 4 makes opaque
    modified: list[str]  # files layer 4 rewrites
    gzip_tool: str

    @property
    def entries(self) -> int:
        return sum(len(layer.members) for layer in self.layers)

    @property
    def tar_bytes(self) -> int:
        return sum(layer.tar_bytes for layer in self.layers)

    def total(self, attr: str) -> int:
        return sum(int(getattr(layer, attr)) for layer in self.layers)


def gzip_tool() -> tuple[list[str], str]:
    """The gzip decompressor of the anchor (and the compressor of the image)."""
    if shutil.which("pigz"):
        return ["pigz"], "pigz"
    print("note: pigz is not installed (./scripts/setup installs it); falling back to gzip")
    return ["gzip"], "gzip"


def select(spec: LayerSpec) -> list[str]:
    """Files and symlinks under ``spec.sources`` in path order, with all their parents."""
    picked: list[str] = []
    seen: set[tuple[int, int]] = set()  # hard links: an inode's bytes count once
    total = 0
    full = False

    def walk(directory: Path) -> None:
        nonlocal total, full
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if full:
                return
            st = entry.stat(follow_symlinks=False)
            rel = entry.path[1:]
            if stat.S_ISDIR(st.st_mode):
                walk(Path(entry.path))
            elif stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                inode = (st.st_dev, st.st_ino)
                size = st.st_size if stat.S_ISREG(st.st_mode) and inode not in seen else 0
                if stat.S_ISREG(st.st_mode) and st.st_size < spec.min_file_size:
                    continue
                if len(picked) >= spec.max_files:
                    full = True
                    return
                if total + size > spec.max_bytes:
                    continue  # too big for what is left; smaller ones may still fit
                picked.append(rel)
                seen.add(inode)
                total += size

    for source in spec.sources:
        walk(Path("/") / source)
    return with_parents(picked)


def with_parents(paths: Sequence[str]) -> list[str]:
    names = set(paths)
    for p in paths:
        parent = os.path.dirname(p)
        while parent and parent not in names:
            names.add(parent)
            parent = os.path.dirname(parent)
    return sorted(names)


def make_tar(root: Path, members: Sequence[str], out: Path) -> None:
    listing = out.with_suffix(".list")
    listing.write_bytes(b"".join(os.fsencode(m) + b"\0" for m in members))
    subprocess.run([*TAR_CREATE, "-C", str(root), "-T", str(listing), "-f", str(out)], check=True)
    listing.unlink()


def compress(tar: Path, gz_cmd: list[str]) -> tuple[Path, Path]:
    gz, zst = Path(f"{tar}.gz"), Path(f"{tar}.zst")
    with open(gz, "wb") as f:
        subprocess.run([*gz_cmd, "-6", "-c", str(tar)], stdout=f, check=True)
    subprocess.run(["zstd", "-3", "-q", "-f", "-o", str(zst), str(tar)], check=True)
    return gz, zst


def build_top_layer(
    spec: ImageSpec, lower: list[list[str]], stage: Path
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Layer 4 in a staging directory: whiteouts of files and of a directory of layer 1, an
    opaque directory, rewritten files of layers 1-3, new files and a symlink.

    Returns (members, deleted paths, opaque dirs, modified files)."""
    regular = [[p for p in ms if stat.S_ISREG(os.lstat("/" + p).st_mode)] for ms in lower]
    l1_dirs = [p for p in lower[0] if p.count("/") == 3 and stat.S_ISDIR(os.lstat("/" + p).st_mode)]
    l1_dirs = [d for d in l1_dirs if sum(1 for p in regular[0] if p.startswith(d + "/")) >= 2]
    dir_whiteout = l1_dirs[len(l1_dirs) // 3]
    opaque_dir = l1_dirs[2 * len(l1_dirs) // 3]
    untouched = [
        p for p in regular[0] if not p.startswith((dir_whiteout + "/", opaque_dir + "/")) and "/.wh." not in p
    ]
    deleted = [dir_whiteout, *untouched[:: spec.whiteout_every]]
    deleted += regular[1][len(regular[1]) // 2 :: max(1, len(regular[1]) // 3)][:2]
    deleted += regular[2][len(regular[2]) // 2 :: max(1, len(regular[2]) // 3)][:2]
    candidates = [p for p in untouched[spec.whiteout_every // 2 :: spec.modify_every] if p not in deleted]
    modified = [p for p in candidates if os.lstat("/" + p).st_nlink == 1]
    modified += [p for p in regular[1][1::7] if p not in deleted and os.lstat("/" + p).st_nlink == 1][:2]
    modified += [p for p in regular[2][3::11] if p not in deleted and os.lstat("/" + p).st_nlink == 1][:2]

    def mkparents(rel: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if not (stage / d).is_dir():
                (stage / d).mkdir()
                if os.path.isdir("/" + d):
                    shutil.copystat("/" + d, stage / d)

    for p in deleted:
        mkparents(p)
        head, base = os.path.split(p)
        (stage / head / (WH_PREFIX + base)).touch()
    mkparents(opaque_dir + "/x")
    (stage / opaque_dir / WH_OPAQUE).touch()
    (stage / opaque_dir / "NOTE").write_text("layer 4 made this directory opaque\n")
    for i, p in enumerate(modified):
        mkparents(p)
        data = Path("/" + p).read_bytes()
        # grow the small ones, shrink the large ones
        new = data[: len(data) // 2] if len(data) > 1 << 20 else data + f"\nmodified {i}\n".encode()
        (stage / p).write_bytes(new)
        shutil.copymode("/" + p, stage / p)
    for i in range(spec.new_files):
        rel = f"opt/bench/data/{i // 50:02d}/file-{i:05d}.txt"
        mkparents(rel)
        (stage / rel).write_text(f"new file {i}\n" * (1 + i % 40))
    (stage / "opt/bench/current").symlink_to("data/00")

    members: list[str] = []
    for dirpath, dirnames, filenames in os.walk(stage):
        rel = os.path.relpath(dirpath, stage)
        members += [os.path.normpath(os.path.join(rel, n)) for n in dirnames + filenames]
    return sorted(members), deleted, [opaque_dir], modified


def counts(root: Path, members: Sequence[str]) -> tuple[int, int, int]:
    files = dirs = links = 0
    for m in members:
        mode = os.lstat(root / m).st_mode
        dirs += stat.S_ISDIR(mode)
        links += stat.S_ISLNK(mode)
        files += stat.S_ISREG(mode)
    return files, dirs, links


def build_image(spec: ImageSpec, directory: Path) -> Image:
    """Build (or load from ``directory``) the 4 layers: plain tar, gzip and zstd."""
    manifest = directory / "manifest.json"
    gz_cmd, gz_name = gzip_tool()
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("version") == IMAGE_VERSION and all(
            Path(p).exists() for layer in data["layers"] for p in (layer["tar"], layer["gz"], layer["zst"])
        ):
            loaded: list[Layer] = []
            for layer in data["layers"]:
                fields: dict[str, Any] = dict(layer)
                fields.update({k: Path(layer[k]) for k in ("tar", "gz", "zst")})
                loaded.append(Layer(**fields))
            return Image(loaded, data["whiteouts"], data["opaque"], data["modified"], data["gzip_tool"])
    print(f"building the {spec.name} image in {directory} (once; cached) ...", flush=True)
    t0 = time.perf_counter()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    lower = [select(ls) for ls in spec.layers]
    stage = directory / "layer4-root"
    stage.mkdir()
    top, deleted, opaque, modified = build_top_layer(spec, lower, stage)
    layers: list[Layer] = []
    whats = [ls.what for ls in spec.layers] + ["whiteouts, opaque dir, modified and new files"]
    for i, (members, root) in enumerate([(m, Path("/")) for m in lower] + [(top, stage)], start=1):
        tar = directory / f"layer{i}.tar"
        make_tar(root, members, tar)
        gz, zst = compress(tar, gz_cmd)
        files, dirs, links = counts(root, members)
        layers.append(
            Layer(
                whats[i - 1],
                tar,
                gz,
                zst,
                list(members),
                files,
                dirs,
                links,
                tar.stat().st_size,
                gz.stat().st_size,
                zst.stat().st_size,
            )
        )
    shutil.rmtree(stage)
    doc = {
        "version": IMAGE_VERSION,
        "layers": [
            {k: str(v) if isinstance(v, Path) else v for k, v in vars(layer).items()} for layer in layers
        ],
        "whiteouts": deleted,
        "opaque": opaque,
        "modified": modified,
        "gzip_tool": gz_name,
    }
    manifest.write_text(json.dumps(doc))
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    return Image(layers, deleted, opaque, modified, gz_name)


def read_all(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


# --------------------------------------------------------------------------------------------
# Trees: snapshots and comparison


class Entry(NamedTuple):
    kind: str
    mode: int
    size: int
    uid: int
    gid: int
    link: str
    rdev: int
    xattrs: tuple[tuple[str, bytes], ...]


KINDS = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def snapshot(root: Path) -> dict[str, Entry]:
    out: dict[str, Entry] = {}

    def walk(directory: str, prefix: str) -> None:
        with os.scandir(directory) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                kind = KINDS[stat.S_IFMT(st.st_mode)]
                rel = prefix + e.name
                xattrs: tuple[tuple[str, bytes], ...] = ()
                if kind == "dir":
                    xattrs = tuple(
                        sorted(
                            (k, os.getxattr(e.path, k, follow_symlinks=False)) for k in os.listxattr(e.path)
                        )
                    )
                out[rel] = Entry(
                    kind,
                    stat.S_IMODE(st.st_mode),
                    st.st_size if kind == "file" else 0,
                    st.st_uid,
                    st.st_gid,
                    os.readlink(e.path) if kind == "symlink" else "",
                    st.st_rdev if kind in ("char", "block") else 0,
                    xattrs,
                )
                if kind == "dir":
                    walk(e.path, rel + "/")

    walk(str(root), "")
    return out


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class Expected:
    """What a tree must look like: all entries, and the content of a sample of files."""

    entries: dict[str, Entry]
    contents: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, root: Path, every: int, always: Sequence[str] = ()) -> Expected:
        entries = snapshot(root)
        files = sorted(p for p, e in entries.items() if e.kind == "file")
        sample = set(files[::every]) | {p for p in always if p in entries and entries[p].kind == "file"}
        return cls(entries, {p: file_digest(root / p) for p in sorted(sample)})


def compare(root: Path, want: Expected, limit: int = 8) -> list[str]:
    got = snapshot(root)
    problems: list[str] = []
    missing = sorted(want.entries.keys() - got.keys())
    extra = sorted(got.keys() - want.entries.keys())
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[:limit]}")
    if extra:
        problems.append(f"{len(extra)} unexpected, e.g. {extra[:limit]}")
    differ = [p for p in sorted(want.entries.keys() & got.keys()) if want.entries[p] != got[p]]
    for p in differ[:limit]:
        problems.append(f"{p}: want {want.entries[p]}, got {got[p]}")
    if len(differ) > limit:
        problems.append(f"... {len(differ)} entries differ in all")
    bad = [p for p, d in want.contents.items() if p in got and file_digest(root / p) != d]
    if bad:
        problems.append(f"{len(bad)} files with other content, e.g. {bad[:limit]}")
    return problems


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def apply_whiteouts_by_hand(root: Path, top: Layer) -> None:
    """Turn GNU tar's literal extraction of all layers into the merged tree: do what the
    whiteouts of the top layer say (they apply to the layers below), drop the markers."""
    members = set(top.members)
    for m in top.members:
        head, base = os.path.split(m)
        if base == WH_OPAQUE:
            (root / m).unlink()
            for dirpath, dirnames, filenames in os.walk(root / head, topdown=True):
                rel = os.path.relpath(dirpath, root)
                for name in list(dirnames) + filenames:
                    if os.path.join(rel, name) not in members:
                        remove(Path(dirpath) / name)
                        if name in dirnames:
                            dirnames.remove(name)
        elif base.startswith(WH_PREFIX):
            (root / m).unlink()
            victim = root / head / base[len(WH_PREFIX) :]
            if victim.exists() or victim.is_symlink():
                remove(victim)


def as_overlay_upper(root: Path, layer: Layer) -> None:
    """Turn GNU tar's literal extraction of one layer into what an overlay upper dir holds."""
    for m in layer.members:
        head, base = os.path.split(m)
        if base == WH_OPAQUE:
            (root / m).unlink()
            os.setxattr(root / head, "trusted.overlay.opaque", b"y")
        elif base.startswith(WH_PREFIX):
            (root / m).unlink()
            os.mknod(root / head / base[len(WH_PREFIX) :], stat.S_IFCHR, 0)


@dataclass
class References:
    literal: Expected  # GNU tar's tree (whiteout files kept as files)
    merged: Expected  # the tree with the whiteouts applied
    uppers: list[Expected]  # each layer alone, as an overlay upper dir


def extract(layers: Sequence[Layer], target: Path) -> None:
    target.mkdir()
    for layer in layers:
        subprocess.run([*TAR_EXTRACT, "-f", str(layer.tar), "-C", str(target)], check=True)


def references(image: Image, scratch: Path, every: int) -> References:
    layers = image.layers
    extract(layers, scratch / "ref-literal")
    literal = Expected.of(scratch / "ref-literal", every, image.modified)
    apply_whiteouts_by_hand(scratch / "ref-literal", layers[-1])
    merged = Expected.of(scratch / "ref-literal", every, image.modified)
    uppers = []
    for i, layer in enumerate(layers, start=1):
        d = scratch / f"ref-l{i}"
        extract([layer], d)
        if i == len(layers):
            as_overlay_upper(d, layer)
        uppers.append(Expected.of(d, every))
    for d in scratch.glob("ref-*"):
        shutil.rmtree(d)
    # sanity of the reference itself: the whiteouts removed what they name
    for p in image.whiteouts:
        if p in merged.entries or p not in literal.entries:
            raise RuntimeError(f"reference tree: whiteout of {p} did not work")
    return References(literal, merged, uppers)


# --------------------------------------------------------------------------------------------
# The tools

Produces = Literal["literal", "merged", "overlay"]


@dataclass
class Tool:
    label: str
    compression: str  # which files it reads: uncompressed, gzip, zstd
    anchor: bool
    produces: Produces
    run: Callable[[Path], list[ApplyStats]]
    times: list[float] = field(default_factory=list)
    synced: list[float] = field(default_factory=list)


def pipeline(first: list[str], second: list[str]) -> None:
    p1 = subprocess.Popen(first, stdout=subprocess.PIPE)
    assert p1.stdout is not None
    try:
        p2 = subprocess.Popen(second, stdin=p1.stdout)
    finally:
        p1.stdout.close()
    rc2, rc1 = p2.wait(), p1.wait()
    if rc1 or rc2:
        raise RuntimeError(f"{first} | {second} failed: {rc1}, {rc2}")


def make_tools(image: Image) -> list[Tool]:
    gz_cmd, gz_name = gzip_tool()
    layers = image.layers

    def tar_plain(d: Path) -> list[ApplyStats]:
        for layer in layers:
            subprocess.run([*TAR_EXTRACT, "-f", str(layer.tar), "-C", str(d)], check=True)
        return []

    def tar_gzip(d: Path) -> list[ApplyStats]:
        for layer in layers:
            pipeline([*gz_cmd, "-dc", str(layer.gz)], [*TAR_EXTRACT, "-f", "-", "-C", str(d)])
        return []

    def tar_zstd(d: Path) -> list[ApplyStats]:
        for layer in layers:
            subprocess.run([*TAR_EXTRACT, "--zstd", "-f", str(layer.zst), "-C", str(d)], check=True)
        return []

    def sequential(compression: str) -> Callable[[Path], list[ApplyStats]]:
        def run(d: Path) -> list[ApplyStats]:
            return [apply_layer(d, layer.path(compression), whiteouts="delete") for layer in layers]

        return run

    def parallel(compression: str) -> Callable[[Path], list[ApplyStats]]:
        def run(d: Path) -> list[ApplyStats]:
            def one(i: int) -> ApplyStats:
                return apply_layer(d / f"l{i + 1}", layers[i].path(compression), whiteouts="overlay")

            for i in range(len(layers)):
                (d / f"l{i + 1}").mkdir()
            with ThreadPoolExecutor(max_workers=2) as ex:
                return list(ex.map(one, range(len(layers))))

        return run

    return [
        Tool("GNU tar -x (decompressed tars) = floor", "uncompressed", True, "literal", tar_plain),
        Tool(
            "ctrstore, sequential (decompressed tars)",
            "uncompressed",
            False,
            "merged",
            sequential("uncompressed"),
        ),
        Tool(f"{gz_name} -dc | tar -x = anchor", "gzip", True, "literal", tar_gzip),
        Tool("ctrstore, sequential", "gzip", False, "merged", sequential("gzip")),
        Tool("ctrstore, parallel (2 threads, overlay)", "gzip", False, "overlay", parallel("gzip")),
        Tool("tar --zstd -x = anchor", "zstd", True, "literal", tar_zstd),
        Tool("ctrstore, sequential", "zstd", False, "merged", sequential("zstd")),
        Tool("ctrstore, parallel (2 threads, overlay)", "zstd", False, "overlay", parallel("zstd")),
    ]


def check_stats(tool: Tool, image: Image, stats: list[ApplyStats]) -> list[str]:
    if tool.label.startswith("ctrstore") and len(stats) != len(image.layers):
        return [f"{len(stats)} ApplyStats for {len(image.layers)} layers"]
    problems = []
    for i, (layer, s) in enumerate(zip(image.layers, stats, strict=False), start=1):
        size = layer.path(tool.compression).stat().st_size
        want = (layer.diff_id, tool.compression, size, layer.tar_bytes, len(layer.members))
        compression = "uncompressed" if s.compression == "none" else s.compression
        got = (s.diff_id, compression, s.compressed_bytes, s.uncompressed_bytes, s.entries)
        if got != want:
            problems.append(
                f"layer {i}: want (diff_id, compression, bytes in, bytes out, entries) {want}, got {got}"
            )
    return problems


def verify(tool: Tool, root: Path, image: Image, refs: References) -> list[str]:
    if tool.produces == "literal":
        return compare(root, refs.literal)
    if tool.produces == "merged":
        return compare(root, refs.merged)
    problems = []
    for i, want in enumerate(refs.uppers, start=1):
        problems += [f"l{i}: {p}" for p in compare(root / f"l{i}", want)]
    return problems


# --------------------------------------------------------------------------------------------
# The file system

_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


class LoopFs:
    """A fresh ext4 in a sparse file, loop-mounted on a temporary directory."""

    def __init__(self, directory: Path, size: str = "16G") -> None:
        self.image = directory / f"apply-fs-{os.getpid()}.img"
        self.size = size
        self.mountpoint: Path | None = None

    def __enter__(self) -> Path:
        subprocess.run(["truncate", "-s", self.size, str(self.image)], check=True)
        try:
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image)],
                check=True,
            )
            mnt = Path(tempfile.mkdtemp(prefix="ctrstore-apply-"))
            try:
                subprocess.run(["mount", "-o", "loop", str(self.image), str(mnt)], check=True)
            except BaseException:
                mnt.rmdir()
                raise
            self.mountpoint = mnt
        except BaseException:
            self.image.unlink(missing_ok=True)
            raise
        return mnt

    def flush(self) -> None:
        """Write the image file's dirty pages to the disk below: the loop device is buffered, so
        a ``syncfs`` of the ext4 only reaches the page cache of the image file, and its writeback
        would otherwise run (and compete for the CPU) during the next timed run."""
        fd = os.open(self.image, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.mountpoint is not None:
            for attempt in range(5):
                if subprocess.run(["umount", str(self.mountpoint)]).returncode == 0:
                    break
                time.sleep(0.5 * (attempt + 1))
            else:
                subprocess.run(["umount", "-l", str(self.mountpoint)], check=False)
            self.mountpoint.rmdir()
            self.mountpoint = None
        self.image.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The run


def wipe(root: Path) -> None:
    for p in root.iterdir():
        if p.name == "lost+found":
            continue
        if p.is_dir() and not p.is_symlink():
            subprocess.run(["rm", "-rf", "--one-file-system", str(p)], check=True)
        else:
            p.unlink()


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("this benchmark needs root (loop mounts, chown, whiteout devices)")
        return 2
    rounds: int = args.rounds if args.rounds is not None else (1 if args.check else 3)
    cache = Path(args.cache)
    tmp: Path | None = None
    loop: LoopFs | None = None
    failures: list[str] = []
    try:
        if args.check:
            tmp = Path(tempfile.mkdtemp(prefix="ctrstore-apply-check-", dir="/var/tmp"))
            image = build_image(CHECK, tmp / "image")
        else:
            cache.mkdir(parents=True, exist_ok=True)
            image = build_image(FULL, cache / f"apply-{FULL.name}-v{IMAGE_VERSION}")
        for layer in image.layers:  # hashes the plain tars and warms the page cache
            layer.diff_id = by_hashlib(layer.tar)
            read_all(layer.gz)
            read_all(layer.zst)
        print(image_stats(image), flush=True)

        if args.check:
            assert tmp is not None
            root = tmp / "fs"
            root.mkdir()
            fs_label = "a temporary directory on / (check mode)"
        else:
            loop = LoopFs(cache)
            root = loop.__enter__()
            fs_label = "a fresh loop-mounted ext4 (16 GiB sparse file)"
        every = 1 if args.check else 50
        t0 = time.perf_counter()
        refs = references(image, root, every)
        print(f"reference trees built and snapshot in {time.perf_counter() - t0:.1f} s", flush=True)

        tools = make_tools(image)
        for r in range(rounds):
            order = tools[r % len(tools) :] + tools[: r % len(tools)]  # rotate who goes first
            for n, tool in enumerate(order):
                d = root / f"r{r}-{n}"
                d.mkdir()
                syncfs(root)
                if loop is not None:
                    loop.flush()
                    time.sleep(SETTLE)  # let the kernel's deferred work (extent conversion) finish
                if args.drop_caches:
                    drop_caches()
                t = time.perf_counter()
                stats = tool.run(d)
                elapsed = time.perf_counter() - t
                syncfs(root)
                synced = time.perf_counter() - t
                tool.times.append(elapsed)
                tool.synced.append(synced)
                problems = check_stats(tool, image, stats) + verify(tool, d, image, refs)
                name = f"{tool.label} [{tool.compression}]"
                failures += [f"round {r + 1}, {name}: {p}" for p in problems]
                status = "ok" if not problems else f"{len(problems)} PROBLEMS"
                print(f"round {r + 1}/{rounds}: {name}: {elapsed:.2f} s (+sync {synced:.2f} s), {status}")
                if not (args.keep_fs and r == rounds - 1):
                    wipe(root)
        report = render(image, tools, rounds, fs_label, args.drop_caches, args.check)
        print()
        print(report)
        if failures:
            print("VERIFICATION FAILED:")
            for f in failures[:50]:
                print("  " + f)
            return 1
        if not args.check:
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / "apply.md").write_text(report)
        return 0
    finally:
        if loop is not None:
            if args.keep_fs:
                print(f"kept: {loop.image} mounted on {loop.mountpoint} (umount, then rm the image)")
            else:
                loop.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def image_stats(image: Image) -> str:
    lines = [
        "| layer | content | entries | files | dirs | symlinks | tar MB | gzip MB | zstd MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, layer in enumerate(image.layers, start=1):
        lines.append(
            f"| {i} | {layer.what} | {len(layer.members)} | {layer.files} | {layer.dirs} | {layer.symlinks} "
            f"| {layer.tar_bytes / MB:.1f} | {layer.gz_bytes / MB:.1f} | {layer.zst_bytes / MB:.1f} |"
        )
    lines.append(
        f"| all | | {image.entries} | {image.total('files')} | {image.total('dirs')} "
        f"| {image.total('symlinks')} | {image.tar_bytes / MB:.1f} | {image.total('gz_bytes') / MB:.1f} "
        f"| {image.total('zst_bytes') / MB:.1f} |"
    )
    lines.append("")
    lines.append(
        f"Layer 4 deletes {len(image.whiteouts)} paths (one of them a directory), makes "
        f"{len(image.opaque)} directory opaque and rewrites {len(image.modified)} files. "
        f"Compressed with `{image.gzip_tool} -6` and `zstd -3`."
    )
    return "\n".join(lines)


def render(image: Image, tools: list[Tool], rounds: int, fs_label: str, dropped: bool, check: bool) -> str:
    anchors = {t.compression: t for t in tools if t.anchor}
    floor = anchors["uncompressed"]
    med = {id(t): statistics.median(t.times) for t in tools}
    cache = "dropped before each run" if dropped else "warm"
    title = (
        f"### Applying a 4-layer image from /usr ({image.entries} entries, "
        f"{image.tar_bytes / MB:.0f} MB uncompressed; gzip {image.total('gz_bytes') / MB:.0f} MB, "
        f"zstd {image.total('zst_bytes') / MB:.0f} MB)"
    )
    lines = [
        title + (" — CHECK MODE, tiny image, not a measurement" if check else ""),
        "",
        f"{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}. Targets on {fs_label}; page cache {cache}; "
        f"{rounds} round{'s' * (rounds != 1)}, "
        "the tools alternating within each round (the order rotated each round). Times are wall "
        "clock without a sync; *+syncfs* adds the `syncfs` of the target file system right after. "
        "GNU tar extracts the whiteouts as plain `.wh.*` files and computes no digest; ctrstore "
        "applies the whiteouts and computes every layer's diff_id (sha256 of the decompressed tar). "
        "*vs anchor*: median time / the anchor's median time for the same input (lower is better); "
        "*vs floor*: / the median of `tar -x` of the decompressed tars.",
        "",
        "| input | tool | min s | median s | max s | median +syncfs s | MB/s out "
        "| vs anchor | target | vs floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for t in tools:
        m = med[id(t)]
        anchor = anchors[t.compression]
        ratio = m / med[id(anchor)]
        target = TARGETS.get(t.compression)
        if t.anchor:
            vs, goal = "1.00 (anchor)", ""
        else:
            vs = f"{ratio:.2f}"
            goal = f"≤ {target}" if target is not None else ""
            if target is not None:
                ok = "meets" if ratio <= target else "MISSES"
                verdicts.append(
                    f"- {t.compression}, {t.label}: {ratio:.2f}x {anchor.label.split(' =')[0]} "
                    f"({ok} the {target} target)"
                )
        label = t.label.replace("|", "\\|")  # a pipe would end the Markdown cell
        lines.append(
            f"| {t.compression} | {label} | {min(t.times):.2f} | {m:.2f} | {max(t.times):.2f} "
            f"| {statistics.median(t.synced):.2f} | {image.tar_bytes / m / MB:.0f} | {vs} | {goal} "
            f"| {m / med[id(floor)]:.2f} |"
        )
    lines += ["", *verdicts, "", "Image:", "", image_stats(image), ""]
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("apply", help="layer application vs GNU tar (gzip, zstd) on a loop ext4")
    p.add_argument("--rounds", type=int, help="rounds, tools alternating (default 3; 1 with --check)")
    p.add_argument(
        "--cache", default=str(DEFAULT_CACHE), help=f"where the layers are kept (default {DEFAULT_CACHE})"
    )
    p.add_argument("--drop-caches", action="store_true", help="drop the page cache before each timed run")
    p.add_argument(
        "--check", action="store_true", help="smoke mode: tiny image on /, full verification, writes nothing"
    )
    p.add_argument(
        "--keep-fs", action="store_true", help="keep the loop file system and the last round's trees"
    )
    p.set_defaults(func=run)
