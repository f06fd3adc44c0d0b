"""The Python API used by an ordinary user (issue 13): ``ctrstore.Client`` enters the user's
namespace by itself, as the CLI does, so a plain ``python3 script.py`` pulls and runs rootless
without ``ctrstore unshare``; and the pause process that keeps the namespace is a small
program, not a copy of the interpreter.

The scripts run as the session's user with subordinate ids (``rootless_users``), with Debian's
python3 in a venv they can read (``tests/support/rootless.py``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.rootless import User

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="making a test user needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.timeout(300),
]

API_SCRIPT = """
import json, os, sys
from ctrstore import Client

ref = sys.argv[1]
before = os.getuid()
with Client() as c:
    c.pull(ref)
    r = c.run(ref, ["sh", "-c", "id -u; cat /data/hello.txt"], remove=True, network="none")
    d = c.run(ref, ["sleep", "300"], detach=True, name="api-sleeper", network="none")
    print(json.dumps({
        "before": before,
        "after": os.getuid(),
        "uid_map": open("/proc/self/uid_map").read().split(),
        "exit": r.exit_code,
        "stdout": r.stdout.decode(),
        "detached": d.id,
        "root": str(c.root),
    }))
"""

THREADS_SCRIPT = """
import threading, time
from ctrstore import Client
from ctrstore.errdefs import Unavailable

t = threading.Thread(target=time.sleep, args=(30,), daemon=True)
t.start()
try:
    Client()
except Unavailable as e:
    print("Unavailable:", e)
"""

NO_USERNS_SCRIPT = """
import os
from ctrstore import Client

with Client(userns=False) as c:
    print(os.getuid(), len(c.images.list()))
"""


def test_client_enters_the_users_namespace(
    rootless_users: tuple[User, User], rootless_images: dict[str, str]
) -> None:
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    r = alice.run(alice.env["CTRSTORE_PYTHON"], "-c", API_SCRIPT, ref)
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["before"] == alice.uid and out["after"] == 0
    assert out["uid_map"] == ["0", str(alice.uid), "1", "1", str(alice.subuid), "65536"]
    assert (out["exit"], out["stdout"]) == (0, "0\nhello from a ctrstore image\n")
    assert out["root"] == str(alice.root)  # the user's XDG store, as the CLI's
    try:
        # The CLI joins the same namespace and sees what the script made: the image, and the
        # detached container running (its rootfs mounted in the shared mount namespace).
        assert alice.ctrstore("unshare", "readlink", "/proc/self/ns/user").stdout.strip() == os.readlink(
            f"/proc/{alice.pause_pid}/ns/user"
        )
        ps = [json.loads(line) for line in alice.ctrstore("ps", "--format", "json").stdout.splitlines()]
        assert [(p["Names"], p["State"]) for p in ps if p["Names"] == "api-sleeper"] == [
            ("api-sleeper", "running")
        ]
        assert alice.ctrstore("exec", "api-sleeper", "id", "-u").stdout == "0\n"
    finally:
        alice.ctrstore("rm", "-f", "api-sleeper", check=False)


def test_client_in_a_threaded_process_says_what_to_do(rootless_users: tuple[User, User]) -> None:
    alice, _ = rootless_users
    r = alice.run(alice.env["CTRSTORE_PYTHON"], "-c", THREADS_SCRIPT)
    assert "Unavailable: cannot enter the user namespace" in r.stdout, r.stdout + r.stderr
    assert "make the ctrstore.Client before starting threads" in r.stdout
    assert "ctrstore unshare" in r.stdout


def test_client_without_userns_stays_the_user(rootless_users: tuple[User, User]) -> None:
    alice, _ = rootless_users
    r = alice.run(alice.env["CTRSTORE_PYTHON"], "-c", NO_USERNS_SCRIPT)
    assert r.stdout.split()[0] == str(alice.uid)


def test_pause_process_is_a_small_program(rootless_users: tuple[User, User]) -> None:
    """The namespace is held by coreutils' sleep (about a megabyte), not by a fork of the
    interpreter that made it; it ignores the terminal's signals and ends on SIGTERM."""
    alice, _ = rootless_users
    alice.ctrstore("unshare", "true")
    pid = alice.pause_pid
    assert Path(f"/proc/{pid}/exe").resolve().name == "sleep"
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"ctrstore-pause", b"infinity"]
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    assert int(status["VmRSS"].split()[0]) < 8 * 1024, status["VmRSS"]  # kB; Python's fork: ~20 MB
    ignored = int(status["SigIgn"], 16)
    assert all(ignored & (1 << (sig - 1)) for sig in (1, 2, 3, 13, 20))  # HUP INT QUIT PIPE TSTP
    assert not ignored & (1 << (15 - 1))  # TERM ends it
