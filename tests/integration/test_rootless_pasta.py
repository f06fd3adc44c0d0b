"""A rootless container on pasta (issue 13): ``--network pasta`` (Debian's ``passt``), and the
default rootless network where slirp4netns is not installed.

The container gets a network namespace of its own served by pasta: ``eth0`` with the host's
address and a default route, ``/etc/resolv.conf`` naming pasta's DNS forwarder, ``-p`` forwarded
by pasta to 127.0.0.1 of the host; removing it (or its exit) leaves no pasta process of the user
and frees the port. Traffic goes only to 127.0.0.1 and to the test's containers; nothing is
added to the host's routes. pasta opens /dev/net/tun in the namespace as the user: the tests
make it usable by others for their run (``opened_to_users``), as the slirp4netns tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.cli import cli
from tests.support.images import BUSYBOX
from tests.support.rootless import (
    ROOTLESS_MARKS,
    TUN,
    User,
    live_processes,
    nsfs_mounts,
    opened_to_users,
    try_get,
)

pytestmark = ROOTLESS_MARKS

HTTPD = "mkdir -p /www && echo hello-pasta > /www/index.html && exec httpd -f -p 80 -h /www"


def _default_route() -> bool:
    """Whether the host has an IPv4 default route (pasta copies its interface's address)."""
    with suppress(OSError):
        return any(
            line.split()[1] == "00000000" for line in Path("/proc/net/route").read_text().splitlines()[1:]
        )
    return False


@pytest.fixture
def pasta_ready() -> Iterator[None]:
    """pasta installed, a default route to copy, and /dev/net/tun usable by ordinary users for
    the test's run (this machine has it 0600; Debian's udev rules make it 0666)."""
    if shutil.which("pasta") is None:
        pytest.skip("pasta is not installed (Debian's passt)")
    if not TUN.exists():
        pytest.skip(f"{TUN} does not exist: no TUN/TAP device for pasta")
    if not _default_route():
        pytest.skip("the host has no IPv4 default route for pasta to copy")
    with opened_to_users(TUN):
        yield


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pastas(uid: int) -> list[int]:
    """pasta processes of ``uid`` (Debian's runs as ``passt`` or ``passt.avx2``)."""
    return live_processes(uid, "pasta", "passt")


def _port_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:  # (a udp socket with it may share a port with pasta's)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait(cond: object, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_pasta_network_and_published_ports(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], pasta_ready: None
) -> None:
    """``--network pasta``: eth0 with an address and a default route, pasta's DNS forwarder in
    resolv.conf, the container's address in /etc/hosts, ``-p 127.0.0.1:PORT:80`` answered by
    httpd in the container and a udp port held by pasta; ``rm -f`` leaves no pasta, no
    namespace mount, no record, and frees both ports."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    port, uport = _free_port(), _free_port(socket.SOCK_DGRAM)
    alice.ctrstore(
        "run", "-d", "--name", "pweb", "--network", "pasta",
        "-p", f"127.0.0.1:{port}:80", "-p", f"127.0.0.1:{uport}:53/udp",
        ref, "sh", "-c", HTTPD,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (body := try_get(port)) is None:
            assert time.monotonic() < deadline, alice.ctrstore("logs", "pweb", check=False)
            time.sleep(0.3)
        assert body == "hello-pasta\n"
        assert not _port_free(uport, socket.SOCK_DGRAM)  # pasta listens on the udp port

        addr = alice.ctrstore("exec", "pweb", "busybox", "ip", "-4", "addr", "show", "eth0").stdout
        assert "inet " in addr, addr
        routes = alice.ctrstore("exec", "pweb", "cat", "/proc/net/route").stdout.splitlines()[1:]
        assert any(r.split()[:2] == ["eth0", "00000000"] for r in routes), routes
        assert alice.ctrstore("exec", "pweb", "cat", "/etc/resolv.conf").stdout.splitlines()[-1:] == [
            "nameserver 169.254.1.1"
        ]
        inspect = json.loads(alice.ctrstore("inspect", "pweb").stdout)[0]
        ip = inspect["NetworkSettings"]["IPAddress"]
        assert ip and f"inet {ip}/" in addr, (ip, addr)
        hosts = alice.ctrstore("exec", "pweb", "cat", "/etc/hosts").stdout
        assert any(line.startswith(f"{ip}\t") for line in hosts.splitlines()), hosts
        ports = alice.ctrstore("port", "pweb").stdout
        assert f"80/tcp -> 127.0.0.1:{port}" in ports and f"53/udp -> 127.0.0.1:{uport}" in ports, ports
        assert len(_pastas(alice.uid)) == 1, _pastas(alice.uid)
        assert len(nsfs_mounts(alice.pause_pid)) == 1
    finally:
        alice.ctrstore("rm", "-f", "pweb", check=False)
    assert _pastas(alice.uid) == [] and nsfs_mounts(alice.pause_pid) == []
    assert _port_free(port) and _port_free(uport, socket.SOCK_DGRAM)
    assert try_get(port) is None
    assert list(alice.root.rglob("network.json")) == []


def test_pasta_torn_down_when_the_container_exits(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], pasta_ready: None
) -> None:
    """A detached container that exits by itself: the shim's final-exit teardown stops pasta
    and frees the port (all addresses: ``-p PORT:80``)."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    port = _free_port()
    alice.ctrstore(
        "run", "-d", "--name", "pshort", "--network", "pasta", "-p", f"{port}:80", ref, "sleep", "3"
    )
    try:
        assert len(_pastas(alice.uid)) == 1  # (torn down only once the container ends)
        assert not _port_free(port)
        _wait(
            lambda: not _pastas(alice.uid),
            f"pasta still runs: {_pastas(alice.uid)}",
            30,
        )
        _wait(lambda: not nsfs_mounts(alice.pause_pid), "the namespace is still mounted")
        assert _port_free(port)
        ps = json.loads(alice.ctrstore("ps", "-a", "--format", "json").stdout.splitlines()[0])
        assert ps["Names"] == "pshort" and ps["State"] == "exited"
    finally:
        alice.ctrstore("rm", "-f", "pshort", check=False)


def test_pasta_that_died_is_reported_and_cleaned_up(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], pasta_ready: None
) -> None:
    """``check`` finds a pasta killed under its container; ``rm -f`` still leaves nothing."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    alice.ctrstore("run", "-d", "--name", "pdie", "--network", "pasta", ref, "sleep", "300")
    try:
        assert alice.ctrstore("check").returncode == 0
        [pid] = _pastas(alice.uid)
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _pastas(alice.uid), "pasta survived SIGKILL")
        r = alice.ctrstore("check", check=False)
        assert f"pasta (pid {pid}) is not running" in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        alice.ctrstore("rm", "-f", "pdie", check=False)
    assert _pastas(alice.uid) == [] and nsfs_mounts(alice.pause_pid) == []


def test_pasta_that_fails_leaves_nothing(
    rootless_users: tuple[User, User],
    rootless_images: dict[str, str],
    rootless_dir: Path,
    pasta_ready: None,
) -> None:
    """pasta exiting with an error (here a ``pasta`` first on PATH that says what the real one
    says when it cannot bind a port, and exits 1: ctrstore's own checks catch such ports before
    pasta runs): the start fails with pasta's message, and no namespace mount or record is left."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    fake = rootless_dir / f"fake-pasta-{os.getpid()}"
    fake.mkdir(mode=0o755)
    (fake / "pasta").write_text(
        "#!/bin/sh\necho \"Failed to bind any port for '-t 8080:80', exiting\" >&2\nexit 1\n"
    )
    (fake / "pasta").chmod(0o755)
    try:
        user = replace(alice, env=alice.env | {"PATH": f"{fake}:{alice.env['PATH']}"})
        r = user.ctrstore(
            "run", "-d", "--name", "pfail", "--network", "pasta", ref, "sleep", "300", check=False
        )
        assert r.returncode != 0
        said = "Failed to bind any port for '-t 8080:80', exiting"
        assert f"pasta could not set up the container's network: {said}" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert nsfs_mounts(alice.pause_pid) == [] and list(alice.root.rglob("network.json")) == []
    finally:
        alice.ctrstore("rm", "-f", "pfail", check=False)
        shutil.rmtree(fake, ignore_errors=True)


def _path_without(name: str, dirs: list[str], into: Path) -> str:
    """A directory of symlinks to every program in ``dirs`` but ``name`` (the first of a name
    wins, as PATH's lookup does)."""
    into.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        with suppress(OSError):
            for entry in os.scandir(d):
                link = into / entry.name
                if entry.name != name and not link.is_symlink():
                    link.symlink_to(entry.path)
    into.chmod(0o755)
    return str(into)


def test_default_network_is_pasta_without_slirp4netns(
    rootless_users: tuple[User, User],
    rootless_images: dict[str, str],
    rootless_dir: Path,
    pasta_ready: None,
) -> None:
    """With slirp4netns not on PATH but pasta there, a rootless container on the default network
    gets pasta (podman 5's default): eth0 and pasta's DNS forwarder, no loopback-only note."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    venv_bin, *rest = alice.env["PATH"].split(":")
    hidden = _path_without("slirp4netns", rest, rootless_dir / f"path-no-slirp-{os.getpid()}")
    try:
        user = replace(alice, env=alice.env | {"PATH": f"{venv_bin}:{hidden}"})
        assert user.run("sh", "-c", "command -v slirp4netns", check=False).returncode != 0
        user.ctrstore("pull", "-q", ref)
        r = user.ctrstore(
            "run", "--rm", ref, "sh", "-c", "busybox ip -4 addr show eth0; cat /etc/resolv.conf"
        )
        assert "loopback only" not in r.stderr, r.stderr
        assert "inet " in r.stdout and "nameserver 169.254.1.1" in r.stdout, r.stdout + r.stderr
        assert _pastas(alice.uid) == []
    finally:
        shutil.rmtree(hidden, ignore_errors=True)


def test_pasta_as_root_is_refused(busybox_store: Path) -> None:
    """Root's containers have CNI's bridge: ``--network pasta`` as root is a clear error."""
    r = cli(busybox_store, "run", "--rm", "--network", "pasta", BUSYBOX, "true")
    assert r.returncode != 0
    assert "--network pasta is for rootless containers" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
