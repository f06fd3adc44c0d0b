"""sha256 throughput: ctrstore's Rust digester against ``sha256sum`` (coreutils) and Python's
``hashlib.sha256`` (OpenSSL, which uses the CPU's SHA instructions), on one file read from a
warm page cache. Target: ctrstore at least 0.9x the faster of the two.

    python -m benches sha256 --size 1G --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrstore import sha256_file

RESULTS = Path(__file__).parent / "results"
TARGET = 0.9


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def by_ctrstore(path: Path) -> str:
    return sha256_file(path)[0]


def by_sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True).stdout
    return "sha256:" + out.split()[0]


def by_hashlib(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return "sha256:" + h.hexdigest()


TOOLS: dict[str, Callable[[Path], str]] = {
    "ctrstore": by_ctrstore,
    "sha256sum": by_sha256sum,
    "hashlib (OpenSSL)": by_hashlib,
}


def make_file(directory: Path, size: int) -> Path:
    path = directory / f"sha256-bench-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        chunk = os.urandom(16 << 20)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return path


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    directory = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    path = make_file(directory, size)
    try:
        by_hashlib(path)  # warm the page cache
        times: dict[str, list[float]] = {name: [] for name in TOOLS}
        digests: dict[str, set[str]] = {name: set() for name in TOOLS}
        for _ in range(args.repeat):
            for name, fn in TOOLS.items():  # alternate the tools within each round
                t0 = time.perf_counter()
                digests[name].add(fn(path))
                times[name].append(time.perf_counter() - t0)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    all_digests = set().union(*digests.values())
    if len(all_digests) != 1:
        print(f"MISMATCH: the tools disagree on the digest: {digests}")
        return 1
    report = render(size, times, args.repeat)
    print(report)
    if not args.check:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "sha256.md").write_text(report)
    return 0


def render(size: int, times: dict[str, list[float]], repeat: int) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    anchor_name = min((k for k in med if k != "ctrstore"), key=lambda k: med[k])
    ratio = med[anchor_name] / med["ctrstore"]
    lines = [
        f"### sha256 of a {size / (1 << 20):.0f} MiB file (page cache warm, {repeat} rounds, median)",
        "",
        "| tool | min s | median s | max s | MB/s (median) | throughput vs faster anchor |",
        "|---|---|---|---|---|---|",
    ]
    for name, ts in times.items():
        rel = med[anchor_name] / med[name]
        mbps = size / med[name] / 1e6
        lo, hi = min(ts), max(ts)
        lines.append(f"| {name} | {lo:.3f} | {med[name]:.3f} | {hi:.3f} | {mbps:.0f} | {rel:.2f}x |")
    verdict = "meets" if ratio >= TARGET else "MISSES"
    summary = f"ctrstore: {ratio:.2f}x the throughput of {anchor_name} ({verdict} the {TARGET}x target)"
    lines += ["", summary, ""]
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sha256", help="sha256 throughput vs sha256sum and OpenSSL")
    p.add_argument("--size", default="1G", help="file size, e.g. 1G, 64M (default 1G)")
    p.add_argument("--repeat", type=int, default=5, help="rounds, tools alternating (default 5)")
    p.add_argument("--dir", help="where to write the test file (default: the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the test file")
    p.add_argument("--check", action="store_true", help="smoke mode: verify digests, write no results")
    p.set_defaults(func=run)
