"""Two docker/nerdctl habits of CNI networking: containers on a shared network find each
other by name (nerdctl's hosts store: every running container of the same network is a line
of the others' ``/etc/hosts``, kept up to date while they start and stop), and
``--mac-address``.

The module makes its own networks (``tests.support.network``): the default ``bridge`` and a
user-defined ``names``, in a conflist directory of its own (``NETCONFPATH``), removed at the
end. Traffic goes only to the module's containers.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import one_line_error, unique_name
from tests.support.cli import run as cli
from tests.support.images import BUSYBOX
from tests.support.network import (
    NETWORK_MARKS,
    ScratchNetwork,
    allocations,
    bridge_ports,
    make_test_network,
    remove_test_network,
)

pytestmark = NETWORK_MARKS

NET = "names"
HTTPD = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"
TASKS = Path("state") / "io.containerd.runtime.v2.task" / "default"


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ScratchNetwork]]:
    """The module's default network and network ``names``; afterwards nothing may be left
    on their bridges."""
    base = tmp_path_factory.mktemp("net")
    made = [make_test_network(base), make_test_network(base, NET)]
    old = os.environ.get("NETCONFPATH")
    os.environ["NETCONFPATH"] = str(made[0].conf_dir)
    try:
        yield made
        for tn in made:
            assert bridge_ports(tn.bridge) == []
            assert allocations(tn) == []
    finally:
        if old is None:
            os.environ.pop("NETCONFPATH", None)
        else:
            os.environ["NETCONFPATH"] = old
        for tn in made:
            remove_test_network(tn)


def ip_of(store: Path, name: str, network: str = NET) -> str:
    doc = json.loads(cli(store, "inspect", name).stdout)[0]
    ip: str = doc["NetworkSettings"]["Networks"][network]["IPAddress"]
    assert ip, doc["NetworkSettings"]
    return ip


def hosts(store: Path, name: str) -> str:
    """The running container's ``/etc/hosts``, as it reads it."""
    return cli(store, "exec", name, "cat", "/etc/hosts").stdout


def names_in(text: str, ip: str) -> list[str]:
    """The names of ``ip``'s lines in a hosts text."""
    return [n for line in text.splitlines() if line.split()[:1] == [ip] for n in line.split()[1:]]


def wait_for(what: str, cond: object, timeout: float = 15) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_containers_on_a_network_reach_each_other_by_name(
    busybox_store: Path, nets: list[ScratchNetwork]
) -> None:
    store = busybox_store
    web, client, third, other = (unique_name(p) for p in ("web", "cl", "third", "other"))
    try:
        cli(
            store,
            "run",
            "-d",
            "--network",
            NET,
            "--name",
            web,
            "--hostname",
            "webhost",
            BUSYBOX,
            "sh",
            "-c",
            HTTPD,
        )
        cli(
            store,
            "run",
            "-d",
            "--network",
            NET,
            "--add-host",
            "extra.example:10.9.8.7",
            "--name",
            client,
            BUSYBOX,
            "sleep",
            "1000",
        )
        web_ip, client_ip = ip_of(store, web), ip_of(store, client)
        # The later one finds the earlier one by name and by host name; the earlier one the later.
        assert (
            cli(store, "exec", client, "busybox", "wget", "-qO-", f"http://{web}/").stdout
            == "hello-webhost\n"
        )
        cli(store, "exec", client, "busybox", "ping", "-c1", "-W2", "webhost")
        cli(store, "exec", web, "busybox", "ping", "-c1", "-W2", client)
        text = hosts(store, client)
        assert names_in(text, web_ip) == [web, "webhost"], text
        assert names_in(text, "10.9.8.7") == ["extra.example"], text  # --add-host kept
        assert client in " ".join(names_in(text, client_ip)), text  # its own line kept
        assert "127.0.0.1\tlocalhost" in text
        assert names_in(hosts(store, web), client_ip) == [client]
        # A third one appears while it runs, and goes with rm -f; one on another network never shows.
        cli(store, "run", "-d", "--network", NET, "--name", third, BUSYBOX, "sleep", "1000")
        cli(store, "run", "-d", "--name", other, BUSYBOX, "sleep", "1000")
        third_ip = ip_of(store, third)
        ip_of(store, other, "bridge")
        assert names_in(hosts(store, client), third_ip) == [third]
        assert names_in(hosts(store, web), third_ip) == [third]
        assert names_in(hosts(store, third), web_ip) == [web, "webhost"]
        assert other not in hosts(store, client) and web not in hosts(store, other)
        cli(store, "rm", "-f", third)
        assert third not in hosts(store, client) and third not in hosts(store, web)
        # stop: the shim's teardown at the exit takes it out too; a start puts it back.
        cli(store, "stop", "-t", "1", web)
        assert web not in hosts(store, client)
        cli(store, "start", web)
        assert names_in(hosts(store, client), ip_of(store, web)) == [web, "webhost"]
    finally:
        cli(store, "rm", "-f", web, client, third, other, ok=False)


def test_the_default_network_too(busybox_store: Path, nets: list[ScratchNetwork]) -> None:
    """As nerdctl (and unlike docker, which names containers only on user-defined networks),
    containers on the default network find each other by name."""
    store = busybox_store
    a, b = unique_name("a"), unique_name("b")
    try:
        for n in (a, b):
            cli(store, "run", "-d", "--name", n, BUSYBOX, "sleep", "1000")
        cli(store, "exec", a, "busybox", "ping", "-c1", "-W2", b)
        cli(store, "exec", b, "busybox", "ping", "-c1", "-W2", a)
    finally:
        cli(store, "rm", "-f", a, b, ok=False)


def _pids(store: Path, name: str) -> tuple[int, int]:
    bundle = store / TASKS / name
    return int((bundle / "shim.pid").read_text()), int((bundle / "init.pid").read_text())


def _kill_shim_and_task(store: Path, name: str) -> None:
    """SIGKILL its shim, then its task (nobody records the exit or detaches it); its record
    made older than a start in progress could be."""
    shim, init = _pids(store, name)
    os.kill(shim, signal.SIGKILL)
    os.kill(init, signal.SIGKILL)
    old = time.time() - 3600
    os.utime(store / "root" / "io.containerd.runtime.v2.task" / "default" / name / "network.json", (old, old))


def test_a_killed_container_leaves_the_others_hosts(busybox_store: Path, nets: list[ScratchNetwork]) -> None:
    """Its task killed (the shim sees the exit): gone at once. Its shim killed, then its task:
    nobody detaches it; check reports it, check --repair (or gc) takes it out."""
    store = busybox_store
    watcher, victims = unique_name("w"), [unique_name("k"), unique_name("k"), unique_name("k")]
    try:
        cli(store, "run", "-d", "--network", NET, "--name", watcher, BUSYBOX, "sleep", "1000")
        for v in victims:
            cli(store, "run", "-d", "--network", NET, "--name", v, BUSYBOX, "sleep", "1000")
            assert v in hosts(store, watcher)
        # SIGKILL of the task: the shim tears it down.
        os.kill(_pids(store, victims[0])[1], signal.SIGKILL)
        wait_for("the killed task to leave", lambda: victims[0] not in hosts(store, watcher))
        # SIGKILL of the shim, then of the task: check reports it, check --repair takes it out ...
        _kill_shim_and_task(store, victims[1])
        time.sleep(0.5)
        assert victims[1] in hosts(store, watcher)
        r = cli(store, "check", ok=False)
        assert r.returncode == 1 and f"default/{victims[1]} is not running" in r.stdout, r.stdout
        cli(store, "check", "--repair", ok=False)
        assert victims[1] not in hosts(store, watcher)
        # ... and so does gc.
        _kill_shim_and_task(store, victims[2])
        time.sleep(0.5)
        assert victims[2] in hosts(store, watcher)
        cli(store, "gc")
        assert victims[2] not in hosts(store, watcher)
        assert names_in(hosts(store, watcher), ip_of(store, watcher)) == [watcher]  # its own line stays
    finally:
        cli(store, "rm", "-f", watcher, *victims, ok=False)


def test_gc_drops_a_member_whose_record_is_gone(busybox_store: Path, nets: list[ScratchNetwork]) -> None:
    """A member of the hosts store whose network record is gone (a teardown that could not
    read a damaged record removes it and nothing else): gc drops its line from the others'
    /etc/hosts. (The record is put back afterwards, so that rm tears the rest down.)"""
    store = busybox_store
    watcher, victim = unique_name("w"), unique_name("k")
    try:
        cli(store, "run", "-d", "--network", NET, "--name", watcher, BUSYBOX, "sleep", "1000")
        cli(store, "run", "-d", "--network", NET, "--name", victim, BUSYBOX, "sleep", "1000")
        assert victim in hosts(store, watcher)
        _kill_shim_and_task(store, victim)
        record = store / "root" / "io.containerd.runtime.v2.task" / "default" / victim / "network.json"
        aside = record.with_name("aside.json")
        record.rename(aside)
        try:
            assert victim in hosts(store, watcher)
            r = cli(store, "check", ok=False)
            assert f"container default/default-{victim} is still named" in r.stdout, r.stdout
            cli(store, "gc")
            assert victim not in hosts(store, watcher)
        finally:
            aside.rename(record)
    finally:
        cli(store, "rm", "-f", watcher, victim, ok=False)


def test_mac_address(busybox_store: Path, nets: list[ScratchNetwork]) -> None:
    store, name = busybox_store, unique_name("mac")
    mac = "02:42:ac:11:00:99"
    try:
        cli(
            store,
            "create",
            "--network",
            NET,
            "--mac-address",
            mac.upper(),
            "--name",
            name,
            BUSYBOX,
            "sleep",
            "1000",
        )
        doc = json.loads(cli(store, "inspect", name).stdout)[0]
        assert doc["Config"]["MacAddress"] == mac
        cli(store, "start", name)
        assert cli(store, "exec", name, "cat", "/sys/class/net/eth0/address").stdout.strip() == mac
        assert f"link/ether {mac}" in cli(store, "exec", name, "busybox", "ip", "link", "show", "eth0").stdout
        doc = json.loads(cli(store, "inspect", name).stdout)[0]
        assert doc["NetworkSettings"]["MacAddress"] == mac
        assert doc["NetworkSettings"]["Networks"][NET]["MacAddress"] == mac
        # It stays through a restart.
        cli(store, "stop", "-t", "1", name)
        cli(store, "start", name)
        assert cli(store, "exec", name, "cat", "/sys/class/net/eth0/address").stdout.strip() == mac
    finally:
        cli(store, "rm", "-f", name, ok=False)


def test_bad_mac_address_refused(busybox_store: Path, nets: list[ScratchNetwork]) -> None:
    store = busybox_store
    for bad in ("zz:42:ac:11:00:99", "02:42:ac:11:00", "0242ac110099"):
        one_line_error(
            cli(store, "create", "--mac-address", bad, BUSYBOX, ok=False),
            "invalid argument",
            "not a valid mac address",
        )
    one_line_error(
        cli(store, "create", "--mac-address", "01:00:5e:00:00:01", BUSYBOX, ok=False),
        "invalid argument",
        "multicast",
    )
    for mode in ("none", "host"):
        one_line_error(
            cli(store, "create", "--network", mode, "--mac-address", "02:42:ac:11:00:99", BUSYBOX, ok=False),
            "invalid argument",
            "conflicting options: mac-address and the network mode",
        )
    other = unique_name("o")
    try:
        cli(store, "run", "-d", "--network", NET, "--name", other, BUSYBOX, "sleep", "1000")
        one_line_error(
            cli(
                store,
                "create",
                "--network",
                f"container:{other}",
                "--mac-address",
                "02:42:ac:11:00:99",
                BUSYBOX,
                ok=False,
            ),
            "invalid argument",
            "conflicting options: mac-address and the network mode",
        )
    finally:
        cli(store, "rm", "-f", other, ok=False)
    assert "02:42:ac:11:00:99" not in cli(store, "ps", "-a").stdout
