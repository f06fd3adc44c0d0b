"""The everyday Python API (docs/python-api.md) against real runc: ``Client`` as a context
manager, ``client.run`` (captured, detached, removed), ``Container`` (get, list, exec with
capture and streaming, logs, stop/kill/wait/remove/reload, docker's status words),
``client.images`` views (id, tags, config, size), export/import_, commit, prune and df.
(The guide's own examples run in ``test_python_api_docs.py``.)

Container names are unique per test: cgroups (``/<namespace>/<id>``) are shared by every
store on this machine. Every container is removed by the ``api`` fixture's teardown.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.client import (
    Capture,
    Container,
    DiskUsage,
    ExecResult,
    ImageView,
    RunResult,
    SystemPruneReport,
)
from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from ctrstore.images import read_json, resolve
from ctrstore.labels import RESTART_POLICY
from ctrstore.metadata.images import Image
from ctrstore.mount import mountinfo, unmount
from ctrstore.oci import SpecOptions
from tests.support.cli import run, unique_name
from tests.support.images import BUSYBOX, busybox_image
from tests.support.network import cni_available, leftovers, make_test_network, remove_test_network

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]


def _our_mounts(root: Path) -> list[str]:
    return [str(m.mount_point) for m in mountinfo() if m.mount_point.is_relative_to(root)]


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A client on a store under tmp_path holding the busybox image as ``BUSYBOX``; its
    containers are removed afterwards and nothing stays mounted."""
    for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE", "CTRSTORE_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    busybox_image(c.content, c.images, BUSYBOX)
    yield c
    with Client(root=tmp_path / "root", state=tmp_path / "state") as after:
        for ctr in after.containers.store.list():
            with suppress(Exception):
                after.containers.delete(ctr.id, force=True)
    c.close()
    for m in sorted(_our_mounts(tmp_path), key=len, reverse=True):
        with suppress(Exception):
            unmount(m)


def _open_files(path: Path) -> list[str]:
    """This process's open files at or below ``path``."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                out.append(target)
    return out


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _state(c: Container) -> tuple[str, int | None]:
    """Its status and exit code as they are now (read through a call: mypy would keep a
    property narrowed by an earlier assert)."""
    return c.status, c.exit_code


def _reloaded(c: Container) -> str:
    c.reload()
    return str(c.status)


# -- the Client ------------------------------------------------------------------------------------


def test_client_is_a_context_manager_that_closes_its_databases(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with Client(root=root, state=tmp_path / "state") as client:
        assert client.images.list() == []
        assert any(f.endswith("meta.db") for f in _open_files(root))
        images, containers = client.images, client.containers
    assert [f for f in _open_files(root) if ".db" in f] == []
    with pytest.raises(FailedPrecondition, match="closed"):
        client.images.list()
    # Stores (and so Container handles) kept from a closed client say so too.
    with pytest.raises(FailedPrecondition, match=r"meta\.db: it is closed"):
        images.list()
    with pytest.raises(FailedPrecondition, match="closed"):
        containers.list(all=True)


def test_leaving_the_block_releases_an_open_lease(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    with Client(root=root, state=state) as client:
        held = client.lease()
        lease = held.__enter__()  # a block left open (an exception elsewhere, a generator...)
        kept = client.with_namespace("default")
        with kept.lease(keep=True) as kept_lease:
            pass
        kept.close()
        assert {lease.id, kept_lease.id} <= {x.id for x in client.leases.list()}
    with Client(root=root, state=state) as check:
        ids = {x.id for x in check.leases.list()}
    assert lease.id not in ids
    assert kept_lease.id in ids
    held.__exit__(None, None, None)  # the block ending later does not fail on the closed client


def test_leaving_the_block_keeps_a_kept_lease(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    with Client(root=root, state=state) as client:
        held = client.lease(keep=True)
        lease = held.__enter__()
    with Client(root=root, state=state) as check:
        assert lease.id in {x.id for x in check.leases.list()}
    held.__exit__(None, None, None)


# -- run -------------------------------------------------------------------------------------------


def test_run_captures_stdout_and_stderr_apart(api: Client) -> None:
    r = api.run(BUSYBOX, ["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"], remove=True)
    assert isinstance(r, RunResult)
    assert (r.exit_code, r.stdout, r.stderr, r.removed) == (3, b"out\nout2\n", b"err\n", True)
    assert api.containers.list(all=True) == []
    with pytest.raises(NotFound):
        api.containers.get(r.id)


def test_run_keeps_an_exited_container_unless_removed(api: Client) -> None:
    name = unique_name("kept")
    r = api.run(BUSYBOX, "sh -c 'exit 7'", name=name)
    assert (r.id, r.exit_code, r.removed) == (name, 7, False)
    c = api.containers.get(name)
    assert (c.status, c.exit_code, c.name, c.image) == ("exited", 7, name, BUSYBOX)
    c.remove()
    with pytest.raises(NotFound):
        api.containers.get(name)


def test_run_options_reach_the_container(api: Client, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    script = (
        "echo $GREETING $PWD $(id -u) $(hostname); cat /in/in.txt; "
        "touch /in/x 2>/dev/null || echo read-only; ls /sys/class/net"
    )
    r = api.run(
        BUSYBOX,
        ["sh", "-c", script],
        remove=True,
        environment={"GREETING": "hi"},
        working_dir="/tmp",
        user="nobody",
        hostname="box",
        volumes={str(shared): {"bind": "/in", "mode": "ro"}},
        network_mode="none",
    )
    assert (r.exit_code, r.stderr) == (0, b"")
    assert r.stdout.decode().splitlines() == ["hi /tmp 65534 box", "from the host", "read-only", "lo"]
    rw = tmp_path / "rw"
    rw.mkdir()
    r = api.run(
        BUSYBOX,
        "sh -c 'echo $A; echo written > /out/file; cat /in/in.txt'",
        remove=True,
        environment=["A=from a list"],
        volumes=[f"{shared}:/in:ro", f"{rw}:/out"],
    )
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"from a list\nfrom the host\n", b"")
    assert (rw / "file").read_text() == "written\n"
    r = api.run(BUSYBOX, "touch /x", remove=True, read_only=True)
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    with pytest.raises(NotFound, match="does not exist"):
        api.run(BUSYBOX, ["true"], volumes=[f"{tmp_path}/none:/in"])
    with pytest.raises(InvalidArgument, match="unknown option 'rx'"):
        api.run(BUSYBOX, ["true"], volumes={str(shared): {"bind": "/in", "mode": "rx"}})
    assert api.containers.list(all=True) == []


def test_named_volumes_outlive_their_containers(api: Client, tmp_path: Path) -> None:
    """``volumes={"name": {"bind": ...}}`` / ``["name:/path"]`` is a named volume, as the CLI's
    ``-v name:/path``: made on first use and filled from the image's files there, kept after
    ``remove=True``, seen by the next container and by the CLI; anonymous volumes go with
    their container, as with ``run --rm``."""
    name = unique_name("vol")
    w = api.run(BUSYBOX, "sh -c 'echo kept > /data/note'", volumes={name: {"bind": "/data"}}, remove=True)
    assert (w.exit_code, w.stderr) == (0, b"")
    # Filled from the image's /data when it was made (busybox_image has /data/hello.txt).
    r = api.run(BUSYBOX, "sh -c 'cat /data/note /data/hello.txt'", volumes=[f"{name}:/data:ro"], remove=True)
    assert r.stdout == b"kept\nhello from a ctrstore image\n"
    r = api.run(BUSYBOX, "touch /data/x", volumes={name: {"bind": "/data", "mode": "ro"}}, remove=True)
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr
    # A detached container's writes are there for the next one, and for the CLI.
    c = api.run(BUSYBOX, "sh -c 'echo later >> /data/note'", volumes=[f"{name}:/data"], detach=True)
    assert c.wait(timeout=30) == 0
    assert api.volumes.users()[name] == [c.id]
    c.remove()
    out = run(tmp_path, "run", "--rm", "-v", f"{name}:/v", BUSYBOX, "cat", "/v/note").stdout
    assert out == "kept\nlater\n"
    assert [v.name for v in api.volumes.list()] == [name]
    # Anonymous volumes go with a remove=True container (and with a failed run).
    assert api.run(BUSYBOX, "ls /scratch", volumes=["/scratch"], remove=True).exit_code == 0
    with pytest.raises(CtrstoreError):
        api.run(BUSYBOX, "/no/such/command", volumes=["/scratch"])
    assert [v.name for v in api.volumes.list()] == [name]
    api.volumes.remove_many([name])


def test_run_user_nobody(api: Client) -> None:
    r = api.run(BUSYBOX, "id -u", remove=True, user="nobody")
    assert (r.exit_code, r.stdout) == (0, b"65534\n")


def test_run_with_a_whole_spec(api: Client) -> None:
    r = api.run(BUSYBOX, spec=SpecOptions(args=["sh", "-c", "echo $A"], env=["A=spec"]), remove=True)
    assert r.stdout == b"spec\n"
    with pytest.raises(InvalidArgument, match="either spec or environment"):
        api.run(BUSYBOX, spec=SpecOptions(args=["true"]), environment={"A": "1"})
    with pytest.raises(InvalidArgument, match="either spec or command"):
        api.run(BUSYBOX, ["true"], spec=SpecOptions(args=["true"]))
    with pytest.raises(TypeError, match="environ"):
        api.run(BUSYBOX, ["true"], environ={"A": "1"})  # type: ignore[call-overload]
    assert api.containers.list(all=True) == []


def test_run_of_the_image_command(api: Client) -> None:
    busybox_image(api.content, api.images, "localhost/echo:1", cmd=("echo", "default command"))
    assert api.run("localhost/echo:1", remove=True).stdout == b"default command\n"


def test_run_a_missing_command_raises_and_leaves_nothing(api: Client) -> None:
    with pytest.raises(CtrstoreError, match="executable file not found"):
        api.run(BUSYBOX, ["no-such-command"], name=unique_name("missing"))
    assert api.containers.list(all=True) == []
    assert _our_mounts(api.state) == []
    with pytest.raises(NotFound, match="no-such-image"):
        api.run("localhost/no-such-image:1", ["true"])
    with pytest.raises(InvalidArgument, match="terminal"):
        api.run(BUSYBOX, ["true"], tty=True)
    assert api.containers.list(all=True) == []


def test_run_finds_an_image_by_its_normalised_name(api: Client) -> None:
    target = api.images.get(BUSYBOX).target
    api.images.create(Image("docker.io/library/bb:1", target))
    assert api.images.get("bb:1").name == "docker.io/library/bb:1"
    r = api.run("bb:1", ["true"], remove=True)
    assert r.exit_code == 0


def test_run_detached_returns_a_running_container(api: Client) -> None:
    name = unique_name("web")
    # (The container's init ignores signals it has no handler for: the trap is its handler.)
    script = "trap 'exit 143' TERM; echo started; sleep 100 & wait"
    c = api.run(BUSYBOX, ["sh", "-c", script], detach=True, name=name)
    assert isinstance(c, Container)
    assert (c.id, c.name, c.status, c.image) == (name, name, "running", BUSYBOX)
    assert c.pid > 0 and c.exit_code is None
    _until(lambda: c.logs() == b"started\n")
    assert c.stop(timeout=5) == 143
    assert _state(c) == ("exited", 143)
    assert c.finished_at
    c.remove()
    assert api.containers.list(all=True) == []


def test_run_detached_and_removed_goes_when_it_exits(api: Client) -> None:
    c = api.run(BUSYBOX, ["sh", "-c", "sleep 0.5"], detach=True, remove=True)
    assert c.status in ("running", "exited")
    _until(lambda: api.containers.list(all=True) == [], timeout=30)


@pytest.mark.skipif(cni_available() is not None, reason=str(cni_available()))
def test_run_attaches_to_networks_as_the_cli_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``client.run`` puts a container on the default network unasked, as ``ctrstore run``
    does (eth0 with an address on bridge's subnet), ``network="none"`` (or ``network_mode``)
    gives loopback only; ``network`` is read as ``--network`` is; a captured run's networking
    is torn down when it returns, a detached one's when it stops."""
    for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE", "CTRSTORE_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    tn = make_test_network(tmp_path / "net")  # this test's "bridge"
    monkeypatch.setenv("NETCONFPATH", str(tn.conf_dir))
    store = tmp_path / "store"
    try:
        with Client(root=store / "root", state=store / "state") as client:
            busybox_image(client.content, client.images, BUSYBOX)
            name = unique_name("apinet")
            r = client.run(BUSYBOX, "sh -c 'ip -o -4 addr'", name=name)  # kept: its rm does not detach it
            assert (r.exit_code, r.stderr) == (0, b"")
            addrs = {line.split()[1]: line.split()[3] for line in r.stdout.decode().splitlines()}
            assert sorted(addrs) == ["eth0", "lo"]
            ip, _, prefix = addrs["eth0"].partition("/")
            assert ipaddress.ip_address(ip) in tn.subnet and prefix == str(tn.subnet.prefixlen)
            assert leftovers(tn, f"default-{name}", [ip], store) == []
            client.containers.get(name).remove()
            for kwargs in ({"network": "none"}, {"network_mode": "none"}, {"network": ["private"]}):
                r = client.run(BUSYBOX, "ls /sys/class/net", remove=True, **kwargs)
                assert (r.exit_code, r.stdout, r.stderr) == (0, b"lo\n", b""), kwargs
            # Detached, on the network by name: attached while it runs, detached once stopped.
            c = client.run(BUSYBOX, "sleep 1000", detach=True, name=unique_name("apinet"), network="bridge")
            ip = client.containers.network_settings(c.id)["IPAddress"]
            assert ipaddress.ip_address(ip) in tn.subnet
            c.stop(timeout=0)
            assert leftovers(tn, f"default-{c.id}", [ip], store) == []
            c.remove()
            # The CLI's rules, the CLI's words.
            with pytest.raises(InvalidArgument, match="cannot be combined"):
                client.run(BUSYBOX, "true", network=["none", "bridge"])
            with pytest.raises(InvalidArgument, match="either network or network_mode"):
                client.run(BUSYBOX, "true", network="none", network_mode="host")
            with pytest.raises(NotFound, match="no-such-net"):
                client.run(BUSYBOX, "true", network="no-such-net")
            assert client.containers.list(all=True) == []
    finally:
        with Client(root=store / "root", state=store / "state") as after:
            for ctr in after.containers.store.list():
                with suppress(Exception):
                    after.containers.delete(ctr.id, force=True)
        remove_test_network(tn)


# -- containers ------------------------------------------------------------------------------------


def test_containers_get_and_list(api: Client) -> None:
    running = api.run(BUSYBOX, ["sleep", "100"], detach=True, name=unique_name("up"))
    done = api.run(BUSYBOX, ["true"], name=unique_name("done"))
    made = api.containers.create(unique_name("made"), BUSYBOX, SpecOptions(args=["true"]))
    assert [c.id for c in api.containers.list()] == [running.id]
    everyone = {c.id: c.status for c in api.containers.list(all=True)}
    assert everyone == {running.id: "running", done.id: "exited", made.id: "created"}
    assert api.containers.get(running.id[:6]).id == running.id  # a unique prefix
    assert api.containers.get(running.name).id == running.id
    assert [c.id for c in api.containers.list(f"id=={done.id}", all=True)] == [done.id]
    with pytest.raises(NotFound, match="no such container: nothing-here"):
        api.containers.get("nothing-here")
    got = api.containers.get(running.id)
    api.containers.kill(running.id, "SIGKILL")  # behind the handle's back
    assert got.status == "running"
    _until(lambda: _reloaded(got) == "exited")
    assert _state(got) == ("exited", 137)


def test_list_shows_a_restarting_container(api: Client) -> None:
    """Between two runs of its restart policy a container is "restarting": up as ``ps``
    counts it, so ``list()`` without ``all`` shows it too."""
    c = api.run(
        BUSYBOX,
        ["sh", "-c", "sleep 0.2; exit 1"],
        detach=True,
        name=unique_name("loop"),
        labels={RESTART_POLICY: "always"},
    )
    try:
        _until(lambda: {x.id: x.status for x in api.containers.list()}.get(c.id) == "restarting", timeout=20)
    finally:
        c.remove(force=True)


def test_kill_wait_and_remove(api: Client) -> None:
    script = "trap 'exit 3' TERM; sleep 100 & wait"
    c = api.run(BUSYBOX, ["sh", "-c", script], detach=True, name=unique_name("kill"))
    with pytest.raises(Unavailable):
        c.wait(timeout=0.2)
    with pytest.raises(FailedPrecondition):
        c.remove()  # running: stop it first, or force
    c.kill("term")
    assert c.wait(timeout=10) == 3
    assert _state(c) == ("exited", 3)
    c.start()
    assert _state(c) == ("running", None)
    c.remove(force=True)
    with pytest.raises(NotFound):
        c.reload()


def test_exec_captures_output(api: Client) -> None:
    c = api.run(BUSYBOX, ["sleep", "100"], detach=True, name=unique_name("exec"))
    r = c.exec(["sh", "-c", "echo o; echo e >&2; exit 4"])
    assert isinstance(r, ExecResult)
    assert (r.exit_code, r.stdout, r.stderr, r.output) == (4, b"o\n", b"e\n", b"o\ne\n")
    r = c.exec("sh -c 'echo $X $PWD $(id -un)'", environment={"X": "x"}, workdir="/data", user="nobody")
    assert r.stdout == b"x /data nobody\n"
    with pytest.raises(CtrstoreError, match="executable file not found"):
        c.exec(["no-such-command"])
    with pytest.raises(InvalidArgument):
        c.exec(["pwd"], workdir="relative")
    c.kill()
    c.wait(10)
    with pytest.raises(FailedPrecondition, match="not running"):
        c.exec(["true"])


def test_exec_streams_chunks_as_they_come(api: Client) -> None:
    c = api.run(BUSYBOX, ["sleep", "100"], detach=True, name=unique_name("stream"))
    script = "for i in 1 2 3; do echo out$i; sleep 0.2; echo err$i >&2; sleep 0.2; done; exit 5"
    seen: list[tuple[str, bytes]] = []
    with c.exec(["sh", "-c", script], stream=True) as s:
        assert isinstance(s, Capture)
        assert s.exit_code is None
        for chunk in s:
            seen.append(chunk)
        assert s.exit_code == 5
    expected = [(stream, f"{stream[3:]}{i}\n".encode()) for i in (1, 2, 3) for stream in ("stdout", "stderr")]
    assert seen == expected


@pytest.mark.timeout(60)  # (a close that waited for the process would wait 1000 s)
def test_closing_an_exec_stream_early_stops_the_process(api: Client) -> None:
    c = api.run(BUSYBOX, ["sleep", "1000"], detach=True, name=unique_name("early"))
    s = c.exec(["sh", "-c", "echo ready; exec sleep 1001"], stream=True)
    assert next(s) == ("stdout", b"ready\n")
    s.close()
    assert s.exit_code is None
    assert b"sleep 1001" not in c.exec(["ps", "-o", "args"]).stdout


def test_logs_stream_and_follow(api: Client) -> None:
    c = api.run(
        BUSYBOX,
        ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"],
        detach=True,
        name=unique_name("logs"),
    )
    chunks = list(c.logs(stream=True, follow=True))  # ends when the container exits
    assert b"".join(chunks) == b"line1\nline2\nline3\n"
    assert c.logs() == b"line1\nline2\nline3\n"
    assert c.wait(10) == 0


# -- images ----------------------------------------------------------------------------------------


def test_images_get_and_list_are_views(api: Client) -> None:
    img = api.images.get(BUSYBOX)
    assert isinstance(img, ImageView) and isinstance(img, Image)
    r = resolve(api.content, img.target)
    assert img.id == r.config.digest
    assert img.digest == img.target.digest
    assert img.config == read_json(api.content, r.config)
    assert img.config["config"]["Cmd"] == ["sh"]
    assert img.size == r.config.size + sum(layer.size for layer in r.layers)
    assert img.tags == [BUSYBOX]
    other = img.tag("localhost/other:2")
    assert (other.name, other.id) == ("localhost/other:2", img.id)
    with pytest.raises(AlreadyExists):
        img.tag("localhost/other:2")
    busybox_image(api.content, api.images, "localhost/echo:1", cmd=("echo",))
    views = {v.name: v for v in api.images.list()}
    assert sorted(views) == ["localhost/busybox:latest", "localhost/echo:1", "localhost/other:2"]
    assert views[BUSYBOX].tags == ["localhost/busybox:latest", "localhost/other:2"]
    assert views["localhost/echo:1"].tags == ["localhost/echo:1"]
    assert views["localhost/echo:1"].id != img.id
    assert api.images.get("localhost/other:2").tags == views[BUSYBOX].tags
    # still the records they were: equal to them, and usable wherever an Image is
    record = api.metadata.images(api.namespace).get(BUSYBOX)
    assert img == record and record == img
    assert dataclasses.asdict(img) == dataclasses.asdict(record)  # (what a JSON output prints)
    assert [i.name for i in api.images.list("name==localhost/echo:1")] == ["localhost/echo:1"]
    with pytest.raises(NotFound):
        api.images.get("localhost/none:1")


def test_export_and_import(api: Client, tmp_path: Path) -> None:
    path = tmp_path / "busybox.tar"
    assert api.export(BUSYBOX, path) > 0
    with Client(root=tmp_path / "root2", state=tmp_path / "state2") as other:
        imported = other.import_(path)
        assert [i.name for i in imported] == [BUSYBOX]
        assert imported[0].id == api.images.get(BUSYBOX).id
        r = other.run(BUSYBOX, "cat /data/hello.txt", remove=True)
        assert r.stdout == b"hello from a ctrstore image\n"
    with open(tmp_path / "two.tar", "wb") as f:
        assert api.export([api.images.get(BUSYBOX)], f) > 0


def test_commit_gives_an_image_view(api: Client) -> None:
    c = api.run(BUSYBOX, ["sleep", "100"], detach=True, name=unique_name("commit"))
    assert c.exec("sh -c 'echo changed > /root/new'").exit_code == 0
    img = api.commit(c.id, "localhost/committed:1")
    assert isinstance(img, ImageView)
    assert img.tags == ["localhost/committed:1"]
    assert len(img.resolved.layers) == 4
    assert api.run(img, "cat /root/new", remove=True).stdout == b"changed\n"


# -- housekeeping ----------------------------------------------------------------------------------


def test_df_and_prune(api: Client) -> None:
    """``client.df()`` and ``client.prune()`` are the CLI's ``system df`` and ``system prune``
    (``ctrstore.client.housekeeping``): docker's rows and reports, and what df calls
    reclaimable is what prune gives back."""
    empty = api.df()
    assert isinstance(empty, DiskUsage)
    assert (empty.images.total, empty.images.active, empty.containers.total) == (1, 0, 0)
    assert empty.images.size == empty.images.reclaimable > 0
    assert (empty.volumes.total, empty.volumes.size) == (0, 0)
    up = api.run(BUSYBOX, ["sleep", "100"], detach=True, name=unique_name("up"))
    done = api.run(
        BUSYBOX,
        "sh -c 'head -c 100000 /dev/zero > /root/big'",
        name=unique_name("done"),
        volumes=["/scratch"],  # an anonymous volume: prune(volumes=True) takes it once unused
    )
    usage = api.df()
    assert (usage.images.active, usage.images.reclaimable) == (1, 0)
    assert (usage.containers.total, usage.containers.active) == (2, 1)
    assert usage.containers.reclaimable >= 100000
    assert usage.containers.size >= usage.containers.reclaimable
    assert (usage.volumes.total, usage.volumes.active) == (1, 1)

    report = api.prune(volumes=True)
    assert isinstance(report, SystemPruneReport)
    assert report.containers.deleted == [done.id]
    assert report.containers.space_reclaimed == usage.containers.reclaimable
    assert report.images.deleted == []  # tagged, and in use
    assert report.volumes is not None and len(report.volumes.deleted) == 1
    assert report.space_reclaimed >= 100000
    assert report.containers.to_json()["ContainersDeleted"] == [done.id]  # docker-py's shape
    assert [c.id for c in api.containers.list(all=True)] == [up.id]
    assert api.df().volumes.total == 0

    # The image is in use: prune(all=True) keeps it.
    assert api.prune(all=True).images.deleted == []
    up.remove(force=True)
    sn = api.snapshotter()
    assert sum(sn.usage(i.name).size for i in sn.walk()) > 0  # the image's unpacked layers
    before = api.df()
    report = api.prune(all=True)
    assert report.images.deleted == [BUSYBOX]
    assert report.images.space_reclaimed == before.images.reclaimable == before.images.size
    after = api.df()
    assert (after.images.total, after.images.size, after.containers.total) == (0, 0, 0)
    assert list(sn.walk()) == []
    assert api.images.list() == []
