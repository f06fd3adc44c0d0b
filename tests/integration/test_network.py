"""Container networking with CNI, as a docker or nerdctl user meets it: ``run -p`` answers on
127.0.0.1, containers reach each other by address, ``--network none`` has only ``lo``, every
container gets ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf``; ``network
ls|create|rm|inspect|prune`` and ``port``; and after ``stop``, ``rm``, a killed shim, a crashed
``run`` or a reboot nothing of a container is left: no veth, iptables rule, host-local address
or namespace mount.

The module's default network (``bridge``) is one of its own (``tests.support.network``): its
own conflist directory (``NETCONFPATH``), bridge and subnet, removed at the end, with a check
that nothing is left on it. Traffic goes only to 127.0.0.1 and to the module's containers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctrstore.mount import unmount
from ctrstore.network.iptables import chain_name
from tests.support.cli import CLI_TIMEOUT, one_line_error, store_env, unique_name
from tests.support.cli import cli as config_cli
from tests.support.cli import run as cli
from tests.support.images import BUSYBOX
from tests.support.network import (
    NETWORK_MARKS,
    ScratchNetwork,
    allocations,
    bridge_ports,
    free_subnet,
    http_get,
    iptables_rules,
    leftovers,
    make_test_network,
    remove_test_network,
)
from tests.support.registry import free_port

pytestmark = NETWORK_MARKS

HTTPD = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(scope="module")
def tn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchNetwork]:
    """The module's default network; afterwards nothing may be left on its bridge."""
    net = make_test_network(tmp_path_factory.mktemp("net"))
    old = os.environ.get("NETCONFPATH")
    os.environ["NETCONFPATH"] = str(net.conf_dir)
    try:
        yield net
        assert bridge_ports(net.bridge) == []
        assert allocations(net) == []
    finally:
        if old is None:
            os.environ.pop("NETCONFPATH", None)
        else:
            os.environ["NETCONFPATH"] = old
        remove_test_network(net)
        assert not [r for r in iptables_rules() if net.bridge in r]


def settings(store: Path, name: str) -> dict[str, Any]:
    doc = json.loads(cli(store, "inspect", name).stdout)[0]
    ns: dict[str, Any] = doc["NetworkSettings"]
    return ns


def test_publish_reach_and_leave_nothing(busybox_store: Path, tn: ScratchNetwork) -> None:
    """The issue's "done when": run -d -p HOST:80 --name web IMAGE httpd answers on
    127.0.0.1:HOST and by address from a second container; port, ps and inspect show it; after
    stop nothing of its networking is left, after rm nothing at all."""
    store, web, port = busybox_store, unique_name("web"), free_port()
    cli(store, "run", "-d", "-p", f"{port}:80", "--name", web, BUSYBOX, "sh", "-c", HTTPD)
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{web}\n"
    ns = settings(store, web)
    ip = ns["IPAddress"]
    assert ns["Gateway"] == tn.gateway and ip.startswith(str(tn.subnet.network_address)[:-1])
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert ns["Networks"]["bridge"]["IPAddress"] == ip
    # A second container reaches it by address (and the host through the gateway).
    r = cli(
        store,
        "run",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        f"wget -qO- http://{ip}/ && wget -qO- http://{tn.gateway}:{port}/",
    )
    assert r.stdout == f"hello-{web}\n" * 2
    assert cli(store, "port", web).stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    assert cli(store, "port", web, "80/tcp").stdout == f"0.0.0.0:{port}\n"
    one_line_error(cli(store, "port", web, "81", ok=False), "not found", "81/tcp")
    assert f"0.0.0.0:{port}->80/tcp" in cli(store, "ps").stdout
    assert web in json.loads(cli(store, "network", "inspect", "bridge").stdout)[0]["Containers"]
    cid = f"default-{web}"
    assert [r for r in iptables_rules() if f'id: \\"{cid}\\"' in r]  # (the check below can fail)
    # ctrstore check runs CNI CHECK on running containers: a DNAT chain emptied is found.
    cli(store, "check")
    dnat = chain_name("bridge", cid, "DN-")
    subprocess.run(["iptables", "-w", "-t", "nat", "-F", dnat], check=True, timeout=30)
    r = cli(store, "check", ok=False)
    assert (
        r.returncode == 1
        and f"container default/{web}: CNI CHECK: eth0 on network bridge: CNI plugin portmap CHECK"
        in r.stdout
    ), r.stdout
    cli(store, "stop", "-t", "1", web)
    assert leftovers(tn, cid, [ip], store) == []
    assert settings(store, web)["IPAddress"] == ""
    cli(store, "rm", web)
    assert leftovers(tn, cid, [ip], store) == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_every_container_gets_hosts_hostname_resolv(busybox_store: Path, tn: ScratchNetwork) -> None:
    store = busybox_store
    script = "cat /etc/hosts; echo --; cat /etc/hostname; echo --; cat /etc/resolv.conf"
    r = cli(
        store, "run", "--rm", "--hostname", "box.example", "--add-host", "db:10.9.8.7",
        "--add-host", "gw:host-gateway", "--dns", "192.0.2.53", "--dns-search", "example.com",
        "--dns-option", "ndots:2", BUSYBOX, "sh", "-c", script,
    )  # fmt: skip
    hosts, hostname, resolv = r.stdout.split("--\n")
    assert "127.0.0.1\tlocalhost\n" in hosts and "10.9.8.7\tdb\n" in hosts and f"{tn.gateway}\tgw\n" in hosts
    assert any(line.endswith("\tbox.example box") for line in hosts.splitlines())
    assert hostname == "box.example\n"
    assert resolv == "search example.com\nnameserver 192.0.2.53\noptions ndots:2\n"
    # --network none: only lo, and still the files (localhost resolves).
    dev = cli(store, "run", "--rm", "--net", "none", BUSYBOX, "cat", "/proc/net/dev").stdout
    assert [line.split(":")[0].strip() for line in dev.splitlines()[2:]] == ["lo"]
    r = cli(store, "run", "--rm", "--network", "none", BUSYBOX, "cat", "/etc/hosts")
    assert r.stdout.startswith("127.0.0.1\tlocalhost\n")
    # --network host: the host's own files.
    r = cli(store, "run", "--rm", "--network", "host", BUSYBOX, "sh", "-c", "cat /etc/hosts; hostname")
    assert r.stdout.startswith(Path("/etc/hosts").read_text())
    assert r.stdout.endswith(os.uname().nodename + "\n")


def _cycle(store: Path, port: int) -> tuple[str, str]:
    name = unique_name("cyc")
    cli(store, "run", "-d", "-p", f"127.0.0.1:{port}:80", "--name", name, BUSYBOX, "sleep", "1000")
    ip = settings(store, name)["IPAddress"]
    cli(store, "rm", "-f", name)
    return name, ip


def test_ten_run_rm_cycles_leave_nothing(busybox_store: Path, tn: ScratchNetwork) -> None:
    store, port = busybox_store, free_port()
    for _ in range(10):
        name, ip = _cycle(store, port)
        assert ip
        assert leftovers(tn, f"default-{name}", [ip], store) == []


def test_network_create_inspect_rm_prune(busybox_store: Path, tn: ScratchNetwork) -> None:
    store = busybox_store
    name = unique_name("net")
    subnet = str(free_subnet())
    # (host-local's allocations of the new network under the test's dir, not /run/ctrstore)
    (store / "config.toml").write_text(
        f'[plugins."io.ctrstore.network.v1.cni"]\nipam_dir = "{tn.ipam_dir}"\n'
    )
    created = config_cli(store, "network", "create", "--subnet", subnet, name)
    assert created.returncode == 0, created.stderr
    net_id = created.stdout.strip()
    conflist = json.loads(next(tn.conf_dir.glob(f"*{name}.conflist")).read_text())
    assert conflist["plugins"][0]["ipam"]["dataDir"] == str(tn.ipam_dir)
    try:
        doc = json.loads(cli(store, "network", "inspect", name).stdout)[0]
        assert doc["Id"] == net_id and doc["IPAM"]["Config"][0]["Subnet"] == subnet
        bridge = doc["Options"]["com.docker.network.bridge.name"]
        assert bridge == f"br-{net_id[:12]}"
        ls = cli(store, "network", "ls").stdout
        assert name in ls and net_id[:12] in ls and "host" in ls and "none" in ls
        one_line_error(cli(store, "network", "create", name, ok=False), "already exists", name)
        one_line_error(
            cli(store, "network", "create", "--subnet", subnet, "x" + name, ok=False),
            "failed precondition",
            "overlaps",
        )
        ip = subnet.replace(".0/24", ".77")
        ctr = unique_name("on")
        cli(store, "run", "-d", "--network", name, "--ip", ip, "--name", ctr, BUSYBOX, "sleep", "1000")
        doc = json.loads(cli(store, "network", "inspect", name).stdout)[0]
        assert doc["Containers"][ctr]["IPv4Address"] == f"{ip}/24"
        assert settings(store, ctr)["Networks"][name]["IPAddress"] == ip
        one_line_error(cli(store, "network", "rm", name, ok=False), "failed precondition", "in use", ctr)
        one_line_error(cli(store, "network", "rm", "host", ok=False), "invalid argument", "pre-defined")
        # On two networks: eth0 and eth1, an address on each.
        r = cli(
            store, "run", "--rm", "--network", "bridge", "--net", name, BUSYBOX, "sh", "-c", "ip -o -4 addr"
        )
        addrs = {line.split()[1]: line.split()[3] for line in r.stdout.splitlines()}
        assert addrs["eth0"].startswith(str(tn.subnet.network_address)[:-1]) and addrs["eth0"].endswith("/24")
        assert addrs["eth1"].startswith(subnet[:-4]) and addrs["eth1"] != f"{ip}/24"
        cli(store, "stop", "-t", "0", ctr)
        one_line_error(
            cli(store, "network", "rm", name, ok=False), "failed precondition", "in use"
        )  # stopped, still on it
        assert cli(store, "network", "prune", "-f").stdout == ""
        cli(store, "rm", ctr)
        assert [r for r in iptables_rules() if bridge in r]  # the isolation rules the firewall plugin made
        assert cli(store, "network", "prune", "-f").stdout == f"Deleted Networks:\n{name}\n"
        assert name not in cli(store, "network", "ls").stdout
        assert [r for r in iptables_rules() if bridge in r] == []
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True, timeout=30).returncode != 0
        one_line_error(cli(store, "network", "rm", name, ok=False), "not found", name)
    finally:
        subprocess.run(["ip", "link", "delete", f"br-{net_id[:12]}"], capture_output=True, timeout=30)
        from ctrstore.network.iptables import remove_bridge_isolation

        remove_bridge_isolation(f"br-{net_id[:12]}")
        for f in tn.conf_dir.glob(f"*{name}*"):
            f.unlink()


def test_bad_flags_are_one_line_errors_and_leave_nothing(busybox_store: Path, tn: ScratchNetwork) -> None:
    store = busybox_store
    cases = [
        (["-p", "80:80:80:80"], "invalid argument", "expected [IP:][HOST:]CONTAINER"),
        (["-p", "99999:80"], "invalid argument", "invalid host port 99999"),
        (["-p", "8000-8001:80"], "invalid argument", "host range"),
        (["-p", "[::1]:80:80"], "invalid argument", "IPv6"),
        (["-p", "80/icmp"], "invalid argument", "unknown protocol"),
        (["--network", "none", "-p", "80"], "invalid argument", "--publish needs a bridge network"),
        (["--network", "host", "--network", "bridge"], "invalid argument", "cannot be combined"),
        (["--network", "nosuchnet"], "not found", "no such network: nosuchnet"),
        (["--ip", "nonsense"], "invalid argument", "--ip"),
        (["--add-host", "nocolon"], "invalid argument", "NAME:IP"),
        (["--dns", "not-an-ip"], "invalid argument", "--dns"),
    ]
    for flags, kind, fragment in cases:
        one_line_error(cli(store, "run", "--rm", *flags, BUSYBOX, "true", ok=False), kind, fragment)
    one_line_error(
        cli(store, "run", "--ip", "192.0.2.200", BUSYBOX, "true", ok=False),
        "invalid argument",
        f"--ip 192.0.2.200 is not a host address of network bridge ({tn.subnet})",
    )
    # An address taken: host-local refuses it at start; the failed start leaves nothing.
    first, second = unique_name("ip"), unique_name("ip")
    ip = str(tn.subnet.network_address + 99)
    cli(store, "run", "-d", "--ip", ip, "--name", first, BUSYBOX, "sleep", "1000")
    r = cli(store, "run", "-d", "--ip", ip, "--name", second, BUSYBOX, "sleep", "1000", ok=False)
    one_line_error(r, "unknown", "CNI plugin bridge ADD (network bridge)", ip)
    assert cli(store, "ps", "-a", "-q").stdout == f"{first}\n"
    assert len(bridge_ports(tn.bridge)) == 1
    cli(store, "rm", "-f", first)
    assert leftovers(tn, f"default-{second}", [ip], store) == []


def test_published_port_taken(busybox_store: Path, tn: ScratchNetwork) -> None:
    """A host port another container publishes, or a program of the host listens on, is
    refused at start (docker's "port is already allocated"); the refused start leaves nothing."""
    store, port = busybox_store, free_port()
    first, second = unique_name("p1"), unique_name("p2")
    cli(store, "run", "-d", "-p", f"{port}:80", "--name", first, BUSYBOX, "sleep", "1000")
    r = cli(
        store, "run", "-d", "-p", f"127.0.0.1:{port}:80", "--name", second, BUSYBOX, "sleep", "1000", ok=False
    )
    one_line_error(r, "already exists", f"port 127.0.0.1:{port}/tcp is already allocated", first)
    assert len(bridge_ports(tn.bridge)) == 1
    cli(store, "rm", "-f", first)
    assert leftovers(tn, f"default-{second}", [], store) == []
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = cli(store, "run", "-d", "-p", f"{port}:80", BUSYBOX, "sleep", "1000", ok=False)
        one_line_error(r, "already exists", "a program of the host uses it")
    # -p CONTAINER alone: a free host port, shown by port and ps.
    name = unique_name("any")
    cli(store, "run", "-d", "-p", "80", "--name", name, BUSYBOX, "sh", "-c", HTTPD)
    line = cli(store, "port", name).stdout.strip()
    host_port = int(line.rsplit(":", 1)[1])
    assert line == f"80/tcp -> 0.0.0.0:{host_port}" and host_port > 0
    assert http_get(f"http://127.0.0.1:{host_port}/") == f"hello-{name}\n"
    cli(store, "rm", "-f", name)


def _running(store: Path, name: str) -> bool:
    r = cli(store, "inspect", name, ok=False)
    return r.returncode == 0 and json.loads(r.stdout)[0]["State"]["Status"] == "running"


def _kill_task(store: Path, name: str) -> None:
    """kill -9 the shim and the container's process, as an OOM killer or a crash would."""
    bundle = store / "state" / "io.containerd.runtime.v2.task" / "default" / name
    shim = int((bundle / "shim.pid").read_text())
    init = int((bundle / "init.pid").read_text())
    for pid in (shim, init):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        Path(f"/proc/{p}").exists() and _alive(p) for p in (shim, init)
    ):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_killed_shim_then_start_then_rm(busybox_store: Path, tn: ScratchNetwork) -> None:
    store, name, port = busybox_store, unique_name("ks"), free_port()
    cli(store, "run", "-d", "-p", f"{port}:80", "--name", name, BUSYBOX, "sh", "-c", HTTPD)
    ip = settings(store, name)["IPAddress"]
    _kill_task(store, name)
    assert "Exited (255)" in cli(store, "ps", "-a").stdout
    # start: what the dead task left is torn down, then set up again (same port).
    cli(store, "start", name)
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{name}\n"
    ip2 = settings(store, name)["IPAddress"]
    assert len(bridge_ports(tn.bridge)) == 1
    _kill_task(store, name)
    cli(store, "rm", name)
    assert leftovers(tn, f"default-{name}", [ip, ip2], store) == []


def test_gc_and_check_repair_tear_down_what_a_crashed_run_left(
    busybox_store: Path, tn: ScratchNetwork
) -> None:
    """A container whose shim was killed with -9 (an attached run killed too) runs on,
    attached, with nobody to detach it when it ends; once the container is gone too, check
    reports its networking and check --repair (or gc) tears it down."""
    store = busybox_store
    names = [unique_name("crash"), unique_name("crash")]
    ips = []
    for name in names:
        run = subprocess.Popen(
            [sys.executable, "-m", "ctrstore", "run", "--name", name, BUSYBOX, "sleep", "1000"],
            env=store_env(store),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + CLI_TIMEOUT
        while not _running(store, name):
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.1)
        ips.append(settings(store, name)["IPAddress"])
        run.kill()
        run.wait(CLI_TIMEOUT)
    # The container outlives its run; its shim is killed, then its task (say, by an OOM
    # killer): nobody records the exit or detaches it.
    runc_root = store / "state" / "runc" / "default"
    tasks = store / "state" / "io.containerd.runtime.v2.task" / "default"
    for name in names:
        os.kill(int((tasks / name / "shim.pid").read_text()), signal.SIGKILL)
        r = subprocess.run(
            ["runc", "--root", str(runc_root), "state", name],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        state = json.loads(r.stdout)
        os.kill(int(state["pid"]), signal.SIGKILL)
    record = store / "root" / "io.containerd.runtime.v2.task" / "default"
    old = time.time() - 3600  # (a record less than a minute old may be a start in progress)
    for name in names:
        os.utime(record / name / "network.json", (old, old))
    r = cli(store, "check", ok=False)
    assert r.returncode == 1 and all(f"default/{n} is not running" in r.stdout for n in names), r.stdout
    assert len(bridge_ports(tn.bridge)) == 2
    cli(store, "check", "--repair", ok=False)
    assert leftovers(tn, f"default-{names[0]}", [ips[0]], store) == []
    assert leftovers(tn, f"default-{names[1]}", [ips[1]], store) == []
    cli(store, "check")
    # gc does it too.
    name = unique_name("gc")
    cli(store, "run", "-d", "--name", name, BUSYBOX, "sleep", "1000")
    ip = settings(store, name)["IPAddress"]
    _kill_task(store, name)
    os.utime(record / name / "network.json", (old, old))
    cli(store, "gc")
    assert leftovers(tn, f"default-{name}", [ip], store) == []
    for n in [*names, name]:
        cli(store, "rm", n)


def test_reboot_with_state_wiped(busybox_store: Path, tn: ScratchNetwork) -> None:
    """A "reboot": the processes die, the namespaces and mounts go, /run is emptied. The first
    command afterwards tears down what the records say (the masquerade chain the bridge plugin
    no longer finds, the port's DNAT rules, the address); start and rm work."""
    store, port = busybox_store, free_port()
    names = [unique_name("rb"), unique_name("rb")]
    ips = []
    for name in names:
        cli(
            store,
            "run",
            "-d",
            "-p",
            f"127.0.0.1:{port}:80" if name == names[0] else "80",
            "--name",
            name,
            BUSYBOX,
            "sh",
            "-c",
            HTTPD,
        )
        ips.append(settings(store, name)["IPAddress"])
    state = store / "state"
    for name in names:
        _kill_task(store, name)
        bundle = state / "io.containerd.runtime.v2.task" / "default" / name
        unmount(bundle / "rootfs")
        unmount(bundle / "netns")
    deadline = time.monotonic() + 10  # the veths go with their namespaces (the kernel frees them a bit later)
    while bridge_ports(tn.bridge) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bridge_ports(tn.bridge) == []
    masq = chain_name("bridge", f"default-{names[0]}")
    assert [r for r in iptables_rules() if masq in r]  # a reboot would have taken these too
    shutil.rmtree(state)
    assert "Exited (255)" in cli(store, "ps", "-a").stdout or cli(store, "ps", "-a").stdout
    for name, ip in zip(names, ips, strict=True):
        assert leftovers(tn, f"default-{name}", [ip], store) == []
    cli(store, "start", names[0])
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{names[0]}\n"
    cli(store, "rm", "-f", *names)
    assert leftovers(tn, f"default-{names[0]}", ips, store) == []
