"""Is a process alive, and is it the one a pid file names? (``/proc`` reads, no signals.)"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive", "alive_since", "process_start_time", "read_pid"]


def read_pid(path: Path) -> int:
    """The pid in ``path``; 0 if there is none (no file, or not a number)."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie is not alive for our purposes."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        # Gone meanwhile: no /proc entry, or (ESRCH) reaped between the open and the read.
        return False


def process_start_time(pid: int) -> str | None:
    """Process ``pid``'s start time (``/proc/PID/stat`` field 22, clock ticks after boot):
    with the pid, what tells a process from a later one given the same number. None if it is
    gone or a zombie (it ended, and its parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def alive_since(pid: int, pid_file: Path) -> bool:
    """Whether ``pid`` is alive and is the process that wrote ``pid_file``: a process that
    started after the file was written only reuses the number (after a reboot)."""
    if not alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        written = pid_file.stat().st_mtime
    except (OSError, ValueError, IndexError, StopIteration):
        return True
    started = btime + start_ticks / os.sysconf("SC_CLK_TCK")
    return started <= written + 2
