"""Containers through the command line, as a nerdctl user types them: ``run -d --name``,
``ps``, ``exec``, ``logs``, ``stop``, ``kill``, ``wait``, ``inspect``, ``rm``, ``commit``,
``run --rm`` (its exit status is the process's), ``run -t`` under a pseudo-terminal.

Each test's store is under its tmp_path; the ``store`` fixture removes every container it
holds afterwards, even when the test failed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrstore.mount import mountinfo
from tests.support.cli import run, unique_name
from tests.support.images import BUSYBOX

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

IMAGE = BUSYBOX
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
TASKS = "io.containerd.runtime.v2.task"


name = unique_name


def our_mounts(tmp_path: Path) -> list[str]:
    return [str(m.mount_point) for m in mountinfo() if str(m.mount_point).startswith(str(tmp_path))]


@pytest.fixture
def store(busybox_store: Path) -> Path:
    """A store holding the busybox image (``busybox_store`` in conftest.py)."""
    return busybox_store


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctrstore: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def ps_rows(store: Path, *flags: str) -> list[dict[str, str]]:
    """``ps`` output as dicts keyed by the header's columns (cut at the header's offsets)."""
    lines = run(store, "ps", *flags).stdout.splitlines()
    header = lines[0]
    cols = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert header.split("  ")[0] == "CONTAINER ID"
    starts = [header.index(c) for c in cols]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(cols, cells, strict=True)))
    return rows


def wait_for(pred: object, timeout: float = 10) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_walkthrough(store: Path) -> None:
    web = name("web")
    # nerdctl run -d --name web IMAGE sleep 1000
    assert run(store, "run", "-d", "--name", web, IMAGE, "sleep", "1000").stdout == f"{web}\n"
    [row] = ps_rows(store)
    assert row == {
        "CONTAINER ID": web[:12],
        "IMAGE": IMAGE,
        "COMMAND": '"sleep 1000"',
        "CREATED": row["CREATED"],
        "STATUS": row["STATUS"],
        "PORTS": "",
        "NAMES": web,
    }
    assert row["CREATED"].endswith(" ago")
    assert re.fullmatch(r"Up (Less than a second|\d+ seconds?)", row["STATUS"]), row  # docker's STATUS

    # mount | grep: the overlay rootfs, lowerdir = snapshots 3:2:1, upperdir = snapshots/4.
    snaps = store / "root" / OVERLAY / "snapshots"
    rootfs = store / "state" / TASKS / "default" / web / "rootfs"
    [mi] = [m for m in mountinfo() if m.mount_point == rootfs]
    opts = dict(o.split("=", 1) for o in mi.super_options.split(",") if "=" in o)
    assert mi.fstype == "overlay"
    assert opts["lowerdir"] == ":".join(str(snaps / n / "fs") for n in ("3", "2", "1"))
    assert opts["upperdir"] == str(snaps / "4" / "fs")
    assert opts["workdir"] == str(snaps / "4" / "work")

    # exec: the write lands in the container's snapshot, on the host.
    run(store, "exec", web, "sh", "-c", "echo hello > /root/hello")
    assert (snaps / "4" / "fs" / "root" / "hello").read_text() == "hello\n"
    assert run(store, "exec", web, "cat", "/root/hello").stdout == "hello\n"
    assert run(store, "exec", web, "sh", "-c", "exit 5", ok=False).returncode == 5
    assert run(store, "exec", "-u", "nobody", "-w", "/data", web, "sh", "-c", "id -u; pwd").stdout == (
        "65534\n/data\n"
    )

    [info] = json.loads(run(store, "inspect", web).stdout)  # docker's shape (#12)
    assert info["Id"] == web and info["Name"] == f"/{web}" and info["Config"]["Image"] == IMAGE
    assert info["State"]["Status"] == "running" and info["State"]["Pid"] > 0
    assert info["GraphDriver"]["Data"]["MergedDir"] == str(rootfs)

    # rm without -f refuses a running container.
    assert "--force" in one_error_line(run(store, "rm", web, ok=False))

    # stop: sleep as PID 1 ignores SIGTERM; SIGKILL after -t seconds -> 137.
    t = time.monotonic()
    assert run(store, "stop", "-t", "1", web).stdout == f"{web}\n"
    assert time.monotonic() - t < 10
    assert run(store, "wait", web).stdout == "137\n"
    assert ps_rows(store) == []
    [row] = ps_rows(store, "-a")
    assert row["STATUS"].startswith("Exited (137) ") and row["STATUS"].endswith(" ago")
    [info] = json.loads(run(store, "inspect", web).stdout)
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137  # docker's word
    assert info["State"]["FinishedAt"]

    # start again: the same snapshot, so the same file.
    run(store, "start", web)
    assert run(store, "exec", web, "cat", "/root/hello").stdout == "hello\n"
    assert run(store, "rm", "-f", web).stdout == f"{web}\n"

    # Nothing is left: mount, bundle, snapshot 4, record.
    assert our_mounts(store) == []
    assert not rootfs.parent.exists()
    assert sorted(os.listdir(snaps)) == ["1", "2", "3"]
    assert run(store, "ps", "-a", "-q").stdout == ""

    # rmi + gc: the image's snapshots and blobs go too.
    run(store, "rmi", IMAGE)
    run(store, "gc")
    assert os.listdir(snaps) == []
    assert run(store, "content", "ls", "-q").stdout == ""


def test_run_exit_status_and_rm(store: Path) -> None:
    r = run(store, "run", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3", ok=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert run(store, "run", "--rm", IMAGE, "true").returncode == 0
    assert run(store, "ps", "-a", "-q").stdout == ""
    assert our_mounts(store) == []
    # Without --rm the container stays, exited with its status.
    kept = name("kept")
    assert run(store, "run", "--name", kept, IMAGE, "sh", "-c", "exit 4", ok=False).returncode == 4
    [row] = ps_rows(store, "-a")
    assert row["NAMES"] == kept and row["STATUS"].startswith("Exited (4)")
    assert run(store, "start", "-a", kept, ok=False).returncode == 4
    run(store, "rm", kept)
    assert run(store, "ps", "-a", "-q").stdout == ""


def test_run_options(store: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("host\n")
    script = 'echo "$FOO"; pwd; id -u; cat /v/in; cat /proc/net/dev | grep -c :; touch /x'
    r = run(
        store,
        "run", "--rm", "-e", "FOO=bar", "-w", "/data", "-u", "nobody", "-v", f"{vol}:/v:ro",
        "--net", "none", "--read-only", IMAGE, "sh", "-c", script,
        ok=False,
    )  # fmt: skip
    assert r.stdout == "bar\n/data\n65534\nhost\n1\n", r.stderr
    assert r.returncode == 1 and "Read-only file system" in r.stderr
    # --net host: the host's network namespace itself (not its interface count at one moment:
    # other tests add and remove veths meanwhile).
    r = run(store, "run", "--rm", "--net", "host", IMAGE, "readlink", "/proc/self/ns/net")
    assert r.stdout.strip() == os.readlink("/proc/self/ns/net")
    r = run(store, "run", "--rm", "--net", "bogus", IMAGE, "true", ok=False)
    assert (
        r.returncode == 125 and "ctrstore: not found: no such network: bogus" in r.stderr
    )  # any name may be one; a failure of ctrstore's is docker's 125


def test_logs_kill_wait(store: Path) -> None:
    talk = name("talk")
    run(store, "run", "-d", "--name", talk, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 2")
    assert run(store, "wait", talk).stdout == "2\n"
    r = run(store, "logs", talk)
    assert (r.stdout, r.stderr) == ("out\n", "err\n")  # each stream where it came from

    trap = name("trap")
    script = "trap 'echo got USR1; exit 42' USR1; echo ready; while :; do sleep 0.05; done"
    run(store, "run", "-d", "--name", trap, IMAGE, "sh", "-c", script)
    wait_for(lambda: "ready" in run(store, "logs", trap).stdout)
    assert run(store, "kill", "-s", "USR1", trap).stdout == f"{trap}\n"
    assert run(store, "wait", trap).stdout == "42\n"
    assert run(store, "logs", trap).stdout == "ready\ngot USR1\n"
    assert "not running" in one_error_line(run(store, "kill", trap, ok=False))

    sleeper = name("sleeper")
    run(store, "run", "-d", "--name", sleeper, IMAGE, "sleep", "1000")
    run(store, "kill", sleeper)  # SIGKILL by default, as nerdctl
    assert run(store, "wait", sleeper).stdout == "137\n"
    # logs -f of a stopped container returns at once
    assert run(store, "logs", "-f", sleeper).stdout == ""
    run(store, "rm", talk, trap, sleeper)
    assert run(store, "ps", "-a", "-q").stdout == ""


def test_run_detached_rm(store: Path) -> None:
    brief = name("brief")
    run(store, "run", "-d", "--rm", "--name", brief, IMAGE, "sh", "-c", "sleep 0.2")
    wait_for(lambda: run(store, "ps", "-a", "-q").stdout == "")
    wait_for(lambda: our_mounts(store) == [])
    assert not (store / "state" / TASKS / "default" / brief).exists()


def test_names_and_id_prefixes(store: Path) -> None:
    cid = run(store, "run", "-d", IMAGE, "sleep", "1000").stdout.strip()
    assert len(cid) == 64
    [row] = ps_rows(store)
    assert row["CONTAINER ID"] == cid[:12] and row["NAMES"] == f"busybox-{cid[:5]}"
    assert run(store, "ps", "--no-trunc").stdout.splitlines()[1].startswith(cid)
    assert run(store, "exec", cid[:8], "true").returncode == 0
    assert run(store, "exec", f"busybox-{cid[:5]}", "true").returncode == 0
    assert "no such container" in one_error_line(run(store, "exec", "nosuch", "true", ok=False))
    run(store, "rm", "-f", f"busybox-{cid[:5]}")
    assert run(store, "ps", "-a", "-q").stdout == ""


def test_errors_leave_nothing(store: Path) -> None:
    r = run(store, "run", "--rm", "--pull", "never", "localhost/nothing:1", "true", ok=False)
    assert r.returncode == 125 and r.stderr.startswith("ctrstore: not found:"), r.stderr
    # A command that is not in the image: run -d fails clearly (127) and removes the container.
    r = run(store, "run", "-d", "--name", name("nope"), IMAGE, "/nope", ok=False)
    assert r.returncode == 127 and len(r.stderr.splitlines()) == 1, r.stderr
    assert 'exec: "/nope": stat /nope: no such file or directory' in r.stderr
    assert run(store, "ps", "-a", "-q").stdout == ""
    # create + start: start fails, the container stays created and rm works.
    nope = name("nope")
    run(store, "create", "--name", nope, IMAGE, "/nope")
    assert "/nope" in one_error_line(run(store, "start", nope, ok=False))
    [row] = ps_rows(store, "-a")
    assert row["STATUS"] == "Created"
    run(store, "rm", nope)
    assert run(store, "ps", "-a", "-q").stdout == "" and our_mounts(store) == []
    assert one_error_line(run(store, "rm", "nosuch", ok=False)).startswith("ctrstore: not found:")
    # A missing runtime.
    cfg = store / "config.toml"
    cfg.write_text('runtime = "nonexistent-runtime"\n')
    r = run(store, "--config", str(cfg), "run", "--rm", IMAGE, "true", ok=False)
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("ctrstore: failed precondition:") and "nonexistent-runtime" in r.stderr
    assert run(store, "ps", "-a", "-q").stdout == "" and our_mounts(store) == []
    assert sorted(os.listdir(store / "root" / OVERLAY / "snapshots")) == ["1", "2", "3"]


def test_commit(store: Path) -> None:
    src = name("src")
    script = "echo new > /root/new.txt; rm /data/hello.txt"
    run(store, "run", "--name", src, IMAGE, "sh", "-c", script)
    assert run(store, "commit", src, "localhost/committed:1").stdout.startswith("sha256:")
    r = run(store, "run", "--rm", "localhost/committed:1", "sh", "-c", "cat /root/new.txt; ls /data")
    assert r.stdout == "new\n"
    run(store, "rm", src)


def _script_cmd(store: Path, *args: str) -> list[str]:
    env = [f"CTRSTORE_ROOT={store / 'root'}", f"CTRSTORE_STATE={store / 'state'}"]
    inner = shlex.join(["env", *env, sys.executable, "-m", "ctrstore", *args])
    return ["script", "-qec", inner, "/dev/null"]


@pytest.mark.skipif(shutil.which("script") is None, reason="script (util-linux) is not installed")
def test_tty(store: Path) -> None:
    r = subprocess.run(
        _script_cmd(store, "run", "-t", "--rm", IMAGE, "sh", "-c", "tty; exit 6"),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert r.returncode == 6, (r.stdout, r.stderr)
    # (script echoes the EOF of its /dev/null stdin as "^@", before or after the output: it
    # races the container's first write)
    assert re.fullmatch(r"/dev/pts/\d+\n", r.stdout.replace("^@", "")), r.stdout
    # Without -t there is no terminal inside, even on one outside.
    r = subprocess.run(
        _script_cmd(store, "run", "--rm", IMAGE, "tty"),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert "not a tty" in r.stdout
    # exec -t into a detached container, and run -d -t (its terminal output goes to logs).
    term = name("term")
    run(store, "run", "-d", "-t", "--name", term, IMAGE, "sh", "-c", "tty; sleep 1000")
    wait_for(lambda: "/dev/pts/" in run(store, "logs", term).stdout)
    r = subprocess.run(
        _script_cmd(store, "exec", "-t", term, "tty"),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert r.returncode == 0 and "/dev/pts/" in r.stdout, (r.stdout, r.stderr)
    run(store, "rm", "-f", term)
