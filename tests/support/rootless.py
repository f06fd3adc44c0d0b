"""Ordinary users for rootless runs (issue 13), shared by ``tests/integration/test_rootless.py``
and the benchmark suite (``benches/suite.py``).

``make_venv`` builds a venv of Debian's ``/usr/bin/python3`` that ordinary users can run (the
project's interpreter lives under /root, which they cannot read): ctrstore's runtime
dependencies from PyPI, ctrstore itself imported from this checkout through a ``.pth`` file.
``made_users`` adds users (with or without subordinate ids in /etc/subuid and /etc/subgid) and
removes them afterwards, killing their processes (the pause process, shims, containers, a
slirp4netns) and removing the lines it added to /etc/subuid and /etc/subgid (the files are
then as they were byte for byte; a line another run added meanwhile stays: two runs at once,
the tests and the bench suite, must not undo each other's users). Both raise
``Unavailable`` with the reason where this machine cannot do it (a test skips with it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "ROOTLESS_MARKS",
    "SUBID_COUNT",
    "SYSTEM_PYTHON",
    "TUN",
    "Unavailable",
    "User",
    "live_processes",
    "made_users",
    "make_venv",
    "nsfs_mounts",
    "opened_to_users",
    "pids_of",
    "try_get",
]

SYSTEM_PYTHON = "/usr/bin/python3"
SUBID_COUNT = 65536
REPO = Path(__file__).resolve().parents[2]
TUN = Path("/dev/net/tun")

ROOTLESS_MARKS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="making a test user needs root"),
    pytest.mark.skipif(
        shutil.which("newuidmap") is None, reason="newuidmap is not installed (Debian's uidmap)"
    ),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.timeout(300),
]
"""What every rootless test module needs (``pytestmark = [*ROOTLESS_MARKS, ...]``)."""


class Unavailable(Exception):
    """This machine cannot make a rootless user or its venv (the message says why)."""


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path
    subuid: int | None
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.home / ".local/share/ctrstore"

    @property
    def state(self) -> Path:
        return Path(f"/tmp/ctrstore-{self.uid}")

    def argv(self, *args: str) -> list[str]:
        """``args`` as a command line that runs as this user (setpriv, as login shells do not)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *args]

    @property
    def pause_pid(self) -> int:
        """The pid of the user's pause process (``<state>/pause.pid``: pid and start time)."""
        return int((self.state / "pause.pid").read_text().split()[0])

    def drop_namespace(self) -> None:
        """Kill the user's pause process, if any (the next command makes a new namespace), and
        wait until it is reaped: a zombie still has its pid and start time (bounded)."""
        try:
            pid = self.pause_pid
        except (OSError, ValueError):
            return
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists():  # (reaped by init: it is an orphan)
            assert time.monotonic() < deadline, f"pause process {pid} was not reaped"
            time.sleep(0.05)

    def ctrstore_argv(self, *args: str) -> list[str]:
        return self.argv(self.env["CTRSTORE_PYTHON"], "-m", "ctrstore", *args)

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``args`` (a command line) as this user, in their home, with a clean environment."""
        r = subprocess.run(
            self.argv(*args), env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def ctrstore(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.env["CTRSTORE_PYTHON"], "-m", "ctrstore", *args, timeout=timeout, check=check)


def _world_readable(path: Path) -> bool:
    return all(p.stat().st_mode & 5 for p in [path, *path.parents])


def make_venv(where: Path) -> Path:
    """A venv of Debian's python3 at ``where`` that ordinary users can run: the runtime
    dependencies from PyPI, ctrstore from this checkout (its ``_core`` is abi3, so any CPython
    >= 3.11 loads it). ``where``'s parents must be searchable by everyone."""
    import ctrstore

    if not Path(SYSTEM_PYTHON).exists():
        raise Unavailable(f"{SYSTEM_PYTHON} (Debian's python3) is not installed")
    src = Path(ctrstore.__file__).resolve().parent.parent
    if not _world_readable(src / "ctrstore"):
        raise Unavailable(f"{src} is not readable by other users: the test user could not import ctrstore")
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(where)], check=True, timeout=120)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    r = subprocess.run(
        [str(where / "bin/pip"), "install", "-q", "--disable-pip-version-check", *deps],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        raise Unavailable(
            f"cannot install ctrstore's dependencies into a venv of {SYSTEM_PYTHON}: {r.stderr[-500:]}"
        )
    site = next(where.glob("lib/python3*/site-packages"))
    (site / "ctrstore-checkout.pth").write_text(f"{src}\n")
    subprocess.run(["chmod", "-R", "a+rX", str(where)], check=True, timeout=60)
    return where


def _subid_start() -> int:
    """A subordinate id range no line of /etc/subuid or /etc/subgid overlaps."""
    end = 100000
    for f in ("/etc/subuid", "/etc/subgid"):
        with suppress(FileNotFoundError):
            for line in Path(f).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    return (end + SUBID_COUNT - 1) // SUBID_COUNT * SUBID_COUNT


def pids_of(uid: int) -> list[int]:
    """Processes owned by ``uid``."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with suppress(OSError):
                if p.stat().st_uid == uid:
                    pids.append(int(p.name))
    return pids


def live_processes(uid: int, *names: str) -> list[int]:
    """Processes of ``uid`` whose command name starts with one of ``names`` (slirp4netns,
    pasta — Debian's runs as ``passt`` or ``passt.avx2`` —, fuse-overlayfs), leaving out
    zombies: those ended, their parent has yet to reap them."""
    out = []
    for pid in pids_of(uid):
        with suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            if comm.startswith(names) and stat.rsplit(")", 1)[1].split()[0] != "Z":
                out.append(pid)
    return out


def nsfs_mounts(pause_pid: int) -> list[str]:
    """The network namespaces bind-mounted in a user's mount namespace (its pause process's)."""
    lines = Path(f"/proc/{pause_pid}/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if " - nsfs " in line]


def try_get(port: int) -> str | None:
    """The body of ``http://127.0.0.1:PORT/``, or None where nothing answers (yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
            return str(r.read().decode())
    except OSError:
        return None


def kill_users_processes(u: User) -> None:
    """SIGKILL every process of ``u`` and of its subordinate ids (bounded: three sweeps)."""
    for _ in range(3):
        pids = pids_of(u.uid)
        if u.subuid is not None:
            pids += pids_of(u.subuid)
        if not pids:
            break
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


@contextmanager
def made_users(
    homes: Path, venv: Path, wanted: Sequence[tuple[str, bool]], tag: str | None = None
) -> Iterator[list[User]]:
    """Users ``NAME<tag>`` (with subids where asked), homes under ``homes`` (which they must be
    able to reach); removed afterwards, with /etc/subuid and /etc/subgid as they were."""
    if os.geteuid() != 0:
        raise Unavailable("making a user needs root")
    if shutil.which("newuidmap") is None:
        raise Unavailable("newuidmap is not installed (Debian's uidmap)")
    existed = {f: Path(f).exists() for f in ("/etc/subuid", "/etc/subgid")}
    added: list[str] = []
    made: list[User] = []
    tag = tag if tag is not None else f"{os.getpid() % 100000}"
    try:
        for base, with_subids in wanted:
            name = f"{base}{tag}"
            home = homes / name
            subprocess.run(
                [
                    "useradd",
                    "-m",
                    "-d",
                    str(home),
                    "-s",
                    "/bin/sh",
                    "-K",
                    "SUB_UID_COUNT=0",
                    "-K",
                    "SUB_GID_COUNT=0",
                    name,
                ],
                check=True,
                timeout=60,
                capture_output=True,
            )
            pw = pwd.getpwnam(name)
            start = None
            if with_subids:
                start = _subid_start()
                added.append(f"{name}:{start}:{SUBID_COUNT}\n")
                for f in ("/etc/subuid", "/etc/subgid"):
                    with open(f, "a") as fh:
                        fh.write(added[-1])
            env = {
                "HOME": str(home),
                "USER": name,
                "LOGNAME": name,
                "PATH": f"{venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8",
                "CTRSTORE_PYTHON": str(venv / "bin/python"),
            }
            made.append(User(name, pw.pw_uid, pw.pw_gid, home, start, env))
        yield made
    finally:
        for u in made:
            # The pause process and any shim or container left: only this user's processes.
            kill_users_processes(u)
            subprocess.run(["userdel", "-r", u.name], timeout=60, capture_output=True, check=False)
            shutil.rmtree(u.home, ignore_errors=True)
            shutil.rmtree(u.state, ignore_errors=True)
        for f, was in existed.items():
            with suppress(FileNotFoundError):
                lines = Path(f).read_text().splitlines(keepends=True)
                kept = "".join(line for line in lines if line not in added)
                if not kept and not was:
                    Path(f).unlink()
                else:
                    Path(f).write_text(kept)


@contextmanager
def opened_to_users(device: Path) -> Iterator[None]:
    """``device`` made 0666 for the block, its mode restored after. Rootless networking needs
    /dev/net/tun and fuse-overlayfs needs /dev/fuse usable by ordinary users; Debian's udev
    rules make both 0666, this machine (no udev) has them 0600, so the tests that need them
    open them for their own run only, and say so."""
    mode = device.stat().st_mode & 0o7777
    device.chmod(0o666)
    try:
        yield
    finally:
        device.chmod(mode)
