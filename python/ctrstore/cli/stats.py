"""``stats`` and ``top``: what a running container uses (from its cgroups) and which
processes it runs, as docker's commands of those names."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

from ctrstore.cli._common import State, pass_state, printable, table
from ctrstore.errdefs import FailedPrecondition


def _bytes_binary(n: float) -> str:
    """docker's ``BytesSize``: 1.5MiB, 64MiB, 512KiB, 100B."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _bytes_decimal(n: float) -> str:
    """docker's ``HumanSize``: 1.2kB, 3.4MB, 0B."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _host_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent on the container's interfaces (not loopback); 0 for a container
    on the host's network, as docker shows it."""
    if not pid:
        return 0, 0
    try:
        if Path(f"/proc/{pid}/ns/net").stat().st_ino == Path("/proc/self/ns/net").stat().st_ino:
            return 0, 0
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return 0, 0
    rx = tx = 0
    for line in lines:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = data.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


@click.command("stats")
@click.option("--all", "-a", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("--no-stream", is_flag=True, help="Print once and exit (default: refresh every second).")
@click.option("--no-trunc", is_flag=True, help="Do not cut ids short.")
@click.argument("ids", nargs=-1)
@pass_state
def stats(st: State, show_all: bool, no_stream: bool, no_trunc: bool, ids: tuple[str, ...]) -> None:
    """What running containers use, read from their cgroups: CPU (% of one CPU, over the last
    half second), memory in use (page cache that can be dropped not counted) of its limit,
    network and block I/O, and processes."""
    mgr = st.client().containers
    if ids:
        cids = [mgr.resolve(r) for r in ids]
    else:
        cids = [
            c.id for c in mgr.store.list() if show_all or mgr.status(c.id).status in ("running", "paused")
        ]
    names = {cid: mgr.name_of(mgr.store.get(cid)) for cid in cids}
    host_mem = _host_memory()
    prev = {cid: (mgr.stats(cid).cpu_ns, time.monotonic()) for cid in cids}
    while True:
        time.sleep(0.5)
        rows = []
        for cid in cids:
            s = mgr.stats(cid)
            now = time.monotonic()
            before, then = prev[cid]
            cpu = 0.0
            if s.cpu_ns is not None and before is not None and now > then:
                cpu = max(s.cpu_ns - before, 0) / ((now - then) * 1e9) * 100
            prev[cid] = (s.cpu_ns, now)
            usage = s.memory_usage or 0
            limit = s.memory_limit or host_mem
            status = mgr.status(cid)
            rx, tx = _net_io(status.pid if status.status == "running" else 0)
            rows.append(
                [
                    cid if no_trunc else cid[:12],
                    names[cid],
                    f"{cpu:.2f}%",
                    f"{_bytes_binary(usage)} / {_bytes_binary(limit)}",
                    f"{usage / limit * 100 if limit else 0:.2f}%",
                    f"{_bytes_decimal(rx)} / {_bytes_decimal(tx)}",
                    f"{_bytes_decimal(s.block_read or 0)} / {_bytes_decimal(s.block_write or 0)}",
                    str(s.pids or 0),
                ]
            )
        if not no_stream and sys.stdout.isatty():
            click.echo("\x1b[2J\x1b[H", nl=False)
        table(
            ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"],
            rows,
        )
        if no_stream:
            return
        time.sleep(0.5)


@click.command("top", context_settings={"allow_interspersed_args": False})
@click.argument("container")
@click.argument("ps_options", nargs=-1, type=click.UNPROCESSED)
@pass_state
def top(st: State, container: str, ps_options: tuple[str, ...]) -> None:
    """The processes of a running container, as the host's ps shows them (PS_OPTIONS, default
    -ef; the output must have a PID column)."""
    mgr = st.client().containers
    pids = set(mgr.pids(mgr.resolve(container)))
    try:
        r = subprocess.run(
            ["ps", *(ps_options or ("-ef",))], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise FailedPrecondition("top needs ps on this host (apt-get install procps)") from None
    if r.returncode != 0:
        raise FailedPrecondition(f"ps {' '.join(ps_options)} failed: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    if not lines:
        return
    header = lines[0].split()
    if "PID" not in header:
        raise FailedPrecondition(f"ps {' '.join(ps_options)} shows no PID column")
    col = header.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            rows.append(fields + [""] * (len(header) - len(fields)))
    table(header, [[printable(c) for c in row] for row in rows])
