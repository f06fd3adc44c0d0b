"""Two docker habits of ``run``'s networking: ``-P``/``--publish-all`` (with ``--expose``)
publishes every exposed port on a free host port, and ``--network container:NAME`` joins the
network namespace of another running container (its interfaces, ports, ``/etc/hosts`` and host
name), with docker's "conflicting options".

Containers are on the session's own default network (``tests/conftest.py``); traffic goes only
to 127.0.0.1 and to the test's containers.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.network import NetworkOptions
from tests.support.cli import one_line_error, unique_name
from tests.support.cli import run as cli
from tests.support.images import busybox_image
from tests.support.network import NETWORK_MARKS, http_get
from tests.support.rootless import User, try_get

pytestmark = NETWORK_MARKS

WEB = "localhost/exposed:1"
"""busybox whose config's ExposedPorts is 80/tcp (a Dockerfile's EXPOSE 80)."""
HTTPD = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture
def web_store(busybox_store: Path) -> Path:
    c = Client(root=busybox_store / "root", state=busybox_store / "state")
    try:
        busybox_image(c.content, c.images, WEB, exposed_ports=("80/tcp",))
    finally:
        c.close()
    return busybox_store


def host_port(store: Path, name: str, private: str) -> int:
    """The host port ``port NAME PRIVATE`` shows (one mapping, on every address)."""
    out = cli(store, "port", name, private).stdout
    assert out.startswith("0.0.0.0:"), out
    return int(out.strip().rsplit(":", 1)[1])


def test_publish_all_publishes_exposed_ports_on_free_host_ports(web_store: Path) -> None:
    store, web = web_store, unique_name("web")
    cli(
        store,
        "run",
        "-d",
        "-P",
        "--expose",
        "8081",
        "--expose",
        "53/udp",
        "--name",
        web,
        WEB,
        "sh",
        "-c",
        HTTPD,
    )
    p80, p8081 = host_port(store, web, "80/tcp"), host_port(store, web, "8081/tcp")
    p53 = int(cli(store, "port", web, "53/udp").stdout.strip().rsplit(":", 1)[1])
    assert len({p80, p8081, p53}) == 3 and all(p > 0 for p in (p80, p8081, p53))
    assert http_get(f"http://127.0.0.1:{p80}/") == f"hello-{web}\n"
    inspected = json.loads(cli(store, "inspect", web).stdout)[0]
    assert inspected["HostConfig"]["PublishAllPorts"] is True
    ports = inspected["NetworkSettings"]["Ports"]
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(p80)}]
    assert set(ports) == {"80/tcp", "8081/tcp", "53/udp"}
    assert f"0.0.0.0:{p80}->80/tcp" in cli(store, "ps").stdout
    # A restart picks free ports again (as for -p 80): the port shown is the one that answers.
    cli(store, "restart", "-t", "1", web)
    assert http_get(f"http://127.0.0.1:{host_port(store, web, '80/tcp')}/") == f"hello-{web}\n"
    cli(store, "rm", "-f", web)

    # -p for an exposed port wins over -P's free port; no port twice.
    other = unique_name("both")
    cli(store, "create", "-P", "-p", "127.0.0.1::80", "--expose", "81", "--name", other, WEB)
    # Without -P, --expose publishes nothing.
    quiet = unique_name("quiet")
    cli(store, "create", "--expose", "81", "--name", quiet, WEB)
    c = Client(root=store / "root", state=store / "state")
    try:
        assert [str(p) for p in c.containers.ports(other)] == ["127.0.0.1:0->80/tcp", "0.0.0.0:0->81/tcp"]
        assert c.containers.ports(quiet) == []
    finally:
        c.close()
    cli(store, "rm", other, quiet)

    # Nothing to publish through with the host's network or none; bad --expose values.
    for net in ("host", "none"):
        one_line_error(
            cli(store, "run", "--rm", "-P", "--network", net, WEB, "true", ok=False),
            "invalid argument",
            "--publish-all needs a bridge network",
            net,
        )
    one_line_error(cli(store, "create", "--expose", "80/xyz", WEB, ok=False), "invalid argument", "80/xyz")
    one_line_error(cli(store, "create", "--expose", "0", WEB, ok=False), "invalid argument", "expose")


def test_publish_all_from_python(web_store: Path) -> None:
    """``run(publish_all=True)`` as ``-P``; ``NetworkOptions(publish_all=True)`` as well."""
    c = Client(root=web_store / "root", state=web_store / "state")
    try:
        ctr = c.containers.run(WEB, ["sh", "-c", HTTPD], detach=True, publish_all=True)
        ports = c.containers.ports(ctr.id)
        assert [(p.private, p.host_port > 0) for p in ports] == [("80/tcp", True)]
        assert http_get(f"http://127.0.0.1:{ports[0].host_port}/").startswith("hello-")
        c.containers.delete(ctr.id, force=True)
        opts = NetworkOptions(publish_all=True, expose=[(90, "tcp")])
        ctr = c.containers.run(WEB, ["sleep", "100"], detach=True, network=opts)
        assert sorted(p.private for p in c.containers.ports(ctr.id)) == ["80/tcp", "90/tcp"]
        c.containers.delete(ctr.id, force=True)
    finally:
        c.close()


def _netdev_names(text: str) -> list[str]:
    return sorted(line.split(":")[0].strip() for line in text.splitlines()[2:])


def test_network_container_joins_a_running_container(web_store: Path) -> None:
    store, web = web_store, unique_name("web")
    cli(store, "run", "-d", "-P", "--name", web, WEB, "sh", "-c", HTTPD)
    port = host_port(store, web, "80/tcp")
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{web}\n"
    mac = json.loads(cli(store, "inspect", web).stdout)[0]["NetworkSettings"]["MacAddress"]
    web_dev = cli(store, "exec", web, "cat", "/proc/net/dev").stdout
    web_hosts = cli(store, "exec", web, "cat", "/etc/hosts").stdout
    # The joiner sees web's interfaces, reaches its httpd on 127.0.0.1, has its name and files.
    script = (
        "cat /proc/net/dev; echo --; cat /sys/class/net/eth0/address; echo --; hostname; echo --; "
        "cat /etc/hosts; echo --; cat /etc/hostname; echo --; wget -qO- http://127.0.0.1:80/"
    )
    r = cli(store, "run", "--rm", "--network", f"container:{web}", WEB, "sh", "-c", script)
    dev, joiner_mac, hostname, hosts, etc_hostname, page = r.stdout.split("--\n")
    assert _netdev_names(dev) == _netdev_names(web_dev) == ["eth0", "lo"]
    assert joiner_mac.strip() == mac
    assert hostname == etc_hostname == f"{web}\n"
    assert hosts == web_hosts
    assert page == f"hello-{web}\n"

    # A detached joiner: inspect names the mode; removing it leaves web's network as it was.
    joiner = unique_name("side")
    cli(store, "run", "-d", "--network", f"container:{web}", "--name", joiner, WEB, "sleep", "1000")
    doc = json.loads(cli(store, "inspect", joiner).stdout)[0]
    assert doc["HostConfig"]["NetworkMode"] == f"container:{web}"
    assert doc["NetworkSettings"]["Networks"] == {} and doc["NetworkSettings"]["Ports"] == {}
    assert _netdev_names(cli(store, "exec", joiner, "cat", "/proc/net/dev").stdout) == ["eth0", "lo"]
    assert cli(store, "ps", "--format", "{{.Ports}}", "--filter", f"name={joiner}").stdout.strip() == ""
    cli(store, "rm", "-f", joiner)
    assert http_get(f"http://127.0.0.1:{port}/") == f"hello-{web}\n"
    assert _netdev_names(cli(store, "exec", web, "cat", "/proc/net/dev").stdout) == ["eth0", "lo"]

    # rm -f of web while a joiner runs (docker allows it): web's networking is torn down, the
    # joiner keeps loopback only, and is removed cleanly afterwards.
    joiner = unique_name("left")
    cli(store, "run", "-d", "--network", f"container:{web}", "--name", joiner, WEB, "sleep", "1000")
    cli(store, "rm", "-f", web)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _netdev_names(cli(store, "exec", joiner, "cat", "/proc/net/dev").stdout) == ["lo"]:
            break
        time.sleep(0.2)
    assert _netdev_names(cli(store, "exec", joiner, "cat", "/proc/net/dev").stdout) == ["lo"]
    cli(store, "stop", "-t", "1", joiner)
    one_line_error(cli(store, "start", joiner, ok=False), "not found", web)
    cli(store, "rm", joiner)


def test_network_container_refuses_conflicts_and_stopped_containers(web_store: Path) -> None:
    store, web = web_store, unique_name("web")
    cli(store, "run", "-d", "--name", web, WEB, "sleep", "1000")
    net = f"container:{web}"
    for flags, words in (
        (["--hostname", "x"], "conflicting options: hostname and the network mode"),
        (["-p", "80"], "conflicting options: port publishing and the container type network mode"),
        (["-P"], "conflicting options: port publishing and the container type network mode"),
        (["--expose", "80"], "conflicting options: port exposing and the container type network mode"),
        (["--dns", "192.0.2.53"], "conflicting options: dns and the network mode"),
        (["--dns-search", "example.com"], "conflicting options: dns and the network mode"),
        (
            ["--add-host", "db:10.9.8.7"],
            "conflicting options: custom host-to-IP mapping and the network mode",
        ),
        (["--ip", "10.4.0.9"], "conflicting options: ip address and the container type network mode"),
        (["--network", "bridge"], "no other network"),
    ):
        r = cli(store, "run", "--rm", "--network", net, *flags, WEB, "true", ok=False)
        one_line_error(r, "invalid argument", words)
    one_line_error(
        cli(store, "run", "--rm", "--network", "container:nosuch", WEB, "true", ok=False),
        "not found",
        "nosuch",
    )
    # A stopped container cannot be joined, at create nor at a joiner's later start.
    joiner = unique_name("j")
    cli(store, "create", "--network", net, "--name", joiner, WEB, "sleep", "1000")
    cli(store, "stop", "-t", "1", web)
    for r in (
        cli(store, "run", "--rm", "--network", net, WEB, "true", ok=False),
        cli(store, "start", joiner, ok=False),
    ):
        one_line_error(r, "failed precondition", f"container {web} is not running")
    cli(store, "rm", joiner, web)


def test_publish_all_and_network_container_rootless(
    rootless_users: tuple[User, User], rootless_images: dict[str, str], tun_for_users: None
) -> None:
    """Rootless: -P's ports reach slirp4netns as -p's do, and a joiner shares the slirp4netns
    namespace of a running container (the same user namespace)."""
    alice, _ = rootless_users
    ref = rootless_images["busybox"]
    alice.ctrstore("pull", "-q", ref)
    alice.ctrstore("run", "-d", "--name", "rweb", "-P", "--expose", "80", ref, "sh", "-c", HTTPD)
    try:
        out = alice.ctrstore("port", "rweb", "80").stdout.strip()
        assert out.startswith("0.0.0.0:"), out
        port = int(out.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while (body := try_get(port)) is None:
            assert time.monotonic() < deadline, alice.ctrstore("logs", "rweb", check=False)
            time.sleep(0.3)
        assert body == "hello-rweb\n"
        script = "cat /proc/net/dev; echo --; hostname; echo --; wget -qO- http://127.0.0.1:80/"
        r = alice.ctrstore("run", "--rm", "--network", "container:rweb", ref, "sh", "-c", script)
        dev, hostname, page = r.stdout.split("--\n")
        assert _netdev_names(dev) == ["lo", "tap0"]
        assert hostname == "rweb\n" and page == "hello-rweb\n"
        assert try_get(port) == "hello-rweb\n"  # the joiner's exit took nothing of rweb's
    finally:
        alice.ctrstore("rm", "-f", "rweb", check=False)
