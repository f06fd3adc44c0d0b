"""``ctrstore.network`` without a network: ``-p`` and ``--add-host`` grammar, the options'
checks and record form, the /etc files, conflists on disk, what a plugin is given and how its
errors read, the chain names the CNI plugins use, and the attachment record. (Real plugins,
namespaces and containers: tests/integration/test_network.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctrstore.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unknown,
)
from ctrstore.network import (
    NetworkOptions,
    PortMapping,
    etc,
    parse_add_host,
    parse_private_port,
    parse_publish,
)
from ctrstore.network.attach import Attachment, DamagedRecord, Record, addresses
from ctrstore.network.cni import CNIPlugins, RuntimeConf, plugin_error
from ctrstore.network.conflist import NetworkStore, network_id
from ctrstore.network.iptables import chain_name
from ctrstore.network.options import parse_expose

P = PortMapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [P(80)]),
        ("8080:80", [P(80, 8080)]),
        ("127.0.0.1:8080:80", [P(80, 8080, "tcp", "127.0.0.1")]),
        ("0.0.0.0:8080:80/udp", [P(80, 8080, "udp")]),
        ("127.0.0.1::80", [P(80, 0, "tcp", "127.0.0.1")]),
        ("53:53/UDP", [P(53, 53, "udp")]),
        ("8000-8001:80-81", [P(80, 8000), P(81, 8001)]),
        ("80-81", [P(80), P(81)]),
        ("9000:9000/sctp", [P(9000, 9000, "sctp")]),
    ],
)
def test_parse_publish(spec: str, expected: list[PortMapping]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "no container port"),
        ("8080:", "no container port"),
        ("a:b:c:d", "expected [IP:][HOST:]CONTAINER"),
        ("0:80", "invalid host port 0"),
        ("8080:0", "invalid container port 0"),
        ("70000:80", "invalid host port 70000"),
        ("x:80", "invalid host port 'x'"),
        ("80-79", "end before start"),
        ("8000-8002:80-81", "differ in length"),
        ("8000-8001:80", "host range"),
        ("[::1]:80:80", "IPv6"),
        ("[::1]80", "expected [IPv6]"),
        ("300.1.1.1:80:80", "invalid host IP address"),
        ("80/icmp", "unknown protocol"),
    ],
)
def test_parse_publish_errors(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_publish(spec)
    assert fragment in str(e.value) and repr(spec) in str(e.value)


def test_port_mapping_forms() -> None:
    p = P(80, 8080, "tcp", "127.0.0.1")
    assert str(p) == "127.0.0.1:8080->80/tcp" and p.private == "80/tcp" and p.public == "127.0.0.1:8080"
    assert str(P(53, 53, "udp")) == "0.0.0.0:53->53/udp"
    assert p.to_cni() == {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}
    assert "hostIP" not in P(80, 1).to_cni()
    assert PortMapping.from_json(p.to_json()) == p
    with pytest.raises(InvalidArgument, match="protocol"):
        PortMapping.from_json({"ContainerPort": 80, "Protocol": "icmp"})
    assert parse_private_port("80") == (80, "tcp") and parse_private_port("53/udp") == (53, "udp")
    for bad in ("x", "0", "80/icmp"):
        with pytest.raises(InvalidArgument):
            parse_private_port(bad)


def test_parse_add_host() -> None:
    assert parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("db=10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("v6:::1") == ("v6", "::1")
    assert parse_add_host("v6=[2001:db8::1]") == ("v6", "2001:db8::1")
    assert parse_add_host("gw:host-gateway") == ("gw", "host-gateway")
    for bad in ("nocolon", "db:", ":1.2.3.4", "db:not-an-ip", "bad name:1.2.3.4"):
        with pytest.raises(InvalidArgument, match="add-host"):
            parse_add_host(bad)


@pytest.mark.parametrize(
    ("opts", "fragment"),
    [
        (NetworkOptions(networks=[]), "no network"),
        (NetworkOptions(networks=["a", "a"]), "given twice"),
        (NetworkOptions(networks=["host", "a"]), "cannot be combined"),
        (NetworkOptions(networks=["container:x", "a"]), "no other network"),
        (NetworkOptions(networks=["container:"]), "give one container"),
        (NetworkOptions(networks=["ns:/x"]), "not supported"),
        (NetworkOptions(networks=["container:x"], ports=[P(80)]), "conflicting options: port publishing"),
        (NetworkOptions(networks=["container:x"], publish_all=True), "conflicting options: port publishing"),
        (
            NetworkOptions(networks=["container:x"], expose=[(80, "tcp")]),
            "conflicting options: port exposing",
        ),
        (NetworkOptions(networks=["container:x"], dns=["1.1.1.1"]), "conflicting options: dns"),
        (NetworkOptions(networks=["container:x"], add_hosts=[("a", "1.2.3.4")]), "host-to-IP mapping"),
        (NetworkOptions(networks=["container:x"], ip="10.4.0.9"), "conflicting options: ip address"),
        (NetworkOptions(networks=["none"], publish_all=True), "--publish-all needs a bridge network"),
        (NetworkOptions(networks=["host"], ports=[P(80)]), "the container's ports are the host's"),
        (NetworkOptions(networks=["none"], ip="10.4.0.9"), "--ip needs a bridge network"),
        (NetworkOptions(networks=["a", "b"], ip="10.4.0.9"), "one network only"),
        (NetworkOptions(ip="fe80::1"), "only IPv4"),
        (NetworkOptions(ip="x"), "not an IP address"),
        (NetworkOptions(ports=[P(80, 8080), P(81, 8080)]), "published twice"),
        (NetworkOptions(dns=["x"]), "--dns 'x'"),
        (NetworkOptions(dns_search=["a b"]), "invalid DNS search"),
        (NetworkOptions(networks=["none"], add_hosts=[("gw", "host-gateway")]), "needs a network"),
    ],
)
def test_network_options_checks(opts: NetworkOptions, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        opts.validate()
    assert fragment in str(e.value)


def test_network_options_round_trip() -> None:
    opts = NetworkOptions(
        networks=["bridge", "other"],
        ports=[P(80, 8080), P(53, 0, "udp", "127.0.0.1")],
        add_hosts=[("db", "10.0.0.5"), ("gw", "host-gateway")],
        dns=["192.0.2.53"],
        dns_search=["example.com"],
        dns_options=["ndots:2"],
    ).validate()
    assert NetworkOptions.from_json(json.loads(json.dumps(opts.to_json()))) == opts
    assert NetworkOptions().validate().mode == "cni" and NetworkOptions(["none"]).mode == "none"
    assert NetworkOptions.from_json({}) == NetworkOptions()
    opts = NetworkOptions(publish_all=True, expose=[(81, "tcp"), (53, "udp")]).validate()
    assert NetworkOptions.from_json(json.loads(json.dumps(opts.to_json()))) == opts
    assert NetworkOptions(["container:abc"]).mode == "container"


def test_with_exposed_and_parse_expose() -> None:
    """-P: the image's ExposedPorts, then --expose, each once and after -p's own."""
    assert parse_expose("8000-8002/udp") == [(8000, "udp"), (8001, "udp"), (8002, "udp")]
    for bad in ("x", "0", "80/xyz", "90-80", "70000"):
        with pytest.raises(InvalidArgument, match="expose"):
            parse_expose(bad)
    opts = NetworkOptions(ports=[P(80, 8080)], publish_all=True, expose=[(81, "tcp"), (80, "tcp")])
    got = opts.with_exposed({"80/tcp": {}, "53/udp": {}})
    assert got.ports == [P(80, 8080), P(53, 0, "udp"), P(81, 0, "tcp")]
    assert NetworkOptions(expose=[(81, "tcp")]).with_exposed({"80/tcp": {}}).ports == []
    with pytest.raises(InvalidArgument, match="ExposedPorts"):
        opts.with_exposed({"eighty": {}})
    with pytest.raises(InvalidArgument):
        NetworkOptions.from_json({"networks": "bridge"})


def test_hosts_file(tmp_path: Path) -> None:
    text = etc.hosts_file("web.example", ["10.4.0.2"], [("db", "10.0.0.5")])
    lines = text.splitlines()
    assert (
        lines[0] == "127.0.0.1\tlocalhost" and "db" in lines[-2] and lines[-1] == "10.4.0.2\tweb.example web"
    )
    assert etc.hosts_file("web", [], []).splitlines()[-1] == "ff02::2\tip6-allrouters"
    host = tmp_path / "hosts"
    host.write_text("127.0.0.1 localhost\n192.0.2.2 node1")
    assert etc.hosts_file("node1", ["x"], [("db", "1.2.3.4")], host_network=True, host_hosts=host) == (
        "127.0.0.1 localhost\n192.0.2.2 node1\n1.2.3.4\tdb\n"
    )


def test_resolv_conf(tmp_path: Path) -> None:
    host = (
        "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n"
        "search a.example b.example\noptions edns0\n"
    )
    assert etc.resolv_conf(host) == "search a.example b.example\nnameserver 192.0.2.1\noptions edns0\n"
    assert (
        etc.resolv_conf("nameserver 127.0.0.1\nnameserver ::1\n")
        == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    )
    assert etc.resolv_conf("nameserver 127.0.0.1\n", host_network=True) == "nameserver 127.0.0.1\n"
    assert etc.resolv_conf(host, dns=["1.1.1.1"], search=["."], options=["ndots:2"]) == (
        "nameserver 1.1.1.1\noptions ndots:2\n"
    )
    # systemd-resolved's stub: its upstream list instead.
    stub, upstream = tmp_path / "resolv.conf", tmp_path / "upstream"
    stub.write_text("nameserver 127.0.0.53\n")
    upstream.write_text("nameserver 192.0.2.9\n")
    assert etc.host_resolv_conf(stub, upstream) == "nameserver 192.0.2.9\n"
    assert etc.host_resolv_conf(stub, tmp_path / "missing") == "nameserver 127.0.0.53\n"
    assert etc.host_resolv_conf(tmp_path / "none") == ""


def test_network_store(tmp_path: Path) -> None:
    import ipaddress

    store = NetworkStore(tmp_path / "net.d", "/run/x")
    assert [n.name for n in store.list()] == ["host", "none"]
    with pytest.raises(NotFound, match="no such network: web"):
        store.get("web")
    conflist = store.bridge_conflist("web", bridge="br-web", subnet=ipaddress.IPv4Network("10.9.0.0/24"))
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    ipam = conflist["plugins"][0]["ipam"]
    assert (
        ipam["ranges"] == [[{"subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}]] and ipam["dataDir"] == "/run/x"
    )
    net = store.write(conflist)
    assert net.file == tmp_path / "net.d" / "ctrstore-web.conflist" and net.id == network_id("web")
    assert store.get("web").bridge == "br-web" and store.get(net.id[:5]).name == "web"
    assert [str(s) for s in store.get("web").subnets] == ["10.9.0.0/24"]
    assert store.get("web").ipam_data_dir == Path("/run/x/web")
    with pytest.raises(AlreadyExists):
        store.write(conflist)
    # Another tool's single-plugin .conf is a network too; it is not ctrstore's to remove.
    (tmp_path / "net.d" / "10-other.conf").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "other", "type": "bridge", "bridge": "cni0"})
    )
    other = store.get("other")
    assert other.plugins == [{"type": "bridge", "bridge": "cni0"}] and not other.managed
    with pytest.raises(FailedPrecondition, match="not made by ctrstore"):
        store.remove_file(other)
    with pytest.raises(InvalidArgument, match="pre-defined"):
        store.remove_file(store.get("host"))
    # A subnet in use (by a network here) is skipped.
    used = store.free_subnet()
    store.write(store.bridge_conflist("w2", bridge="br-w2", subnet=used))
    assert store.free_subnet() != used
    store.remove_file(store.get("w2"))
    assert "w2" not in [n.name for n in store.list()]
    # Damaged files are named.
    (tmp_path / "net.d" / "99-bad.conflist").write_text("{nope")
    with pytest.raises(InvalidArgument, match=r"99-bad\.conflist: not valid JSON"):
        store.list()
    bad: object
    for bad in (
        {"name": "x"},
        {"name": "x", "plugins": []},
        {"name": "x", "plugins": [{}]},
        [],
    ):
        (tmp_path / "net.d" / "99-bad.conflist").write_text(json.dumps(bad))
        with pytest.raises(InvalidArgument, match=r"99-bad\.conflist"):
            store.list()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"subnet": "10.0.0.0/31"}, "too small"),
        ({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, "not a host address"),
        ({"subnet": "10.0.0.0/24", "gateway": "10.0.0.0"}, "not a host address"),
        ({"subnet": "10.0.0.0/24", "ip_range": "10.1.0.0/25"}, "not inside"),
        ({"subnet": "10.0.0.0/24", "bridge": "a-name-too-long-for-linux"}, "invalid bridge name"),
        ({"subnet": "10.0.0.0/24", "mtu": 20}, "invalid MTU"),
    ],
)
def test_bridge_conflist_checks(tmp_path: Path, kwargs: dict[str, object], fragment: str) -> None:
    import ipaddress

    store = NetworkStore(tmp_path, "/run/x")
    args: dict[str, object] = {"bridge": "br0", **kwargs}
    args["subnet"] = ipaddress.IPv4Network(str(args["subnet"]))
    for key in ("gateway",):
        if key in args:
            args[key] = ipaddress.IPv4Address(str(args[key]))
    if "ip_range" in args:
        args["ip_range"] = ipaddress.IPv4Network(str(args["ip_range"]))
    with pytest.raises(InvalidArgument, match=fragment):
        store.bridge_conflist("n", **args)  # type: ignore[arg-type]


def test_internal_network_has_no_gateway_or_portmap(tmp_path: Path) -> None:
    import ipaddress

    c = NetworkStore(tmp_path, "/run/x").bridge_conflist(
        "n", bridge="br0", subnet=ipaddress.IPv4Network("10.0.0.0/24"), internal=True, mtu=1400
    )
    br = c["plugins"][0]
    assert (br["isGateway"], br["ipMasq"], br["mtu"]) == (False, False, 1400) and "routes" not in br["ipam"]
    assert [p["type"] for p in c["plugins"]] == ["bridge", "firewall", "tuning"]


def test_plugin_conf_as_libcni_builds_it() -> None:
    conflist = {"cniVersion": "1.0.0", "name": "net", "plugins": []}
    rt = RuntimeConf("ns-id", "/run/netns/x", "eth0", capabilities={"portMappings": [{"hostPort": 1}]})
    plain = CNIPlugins.plugin_conf(conflist, {"type": "bridge"}, rt, None)
    assert plain == {"type": "bridge", "name": "net", "cniVersion": "1.0.0"}
    pm = {"type": "portmap", "capabilities": {"portMappings": True}}
    conf = CNIPlugins.plugin_conf(conflist, pm, rt, {"ips": []})
    assert conf["runtimeConfig"] == {"portMappings": [{"hostPort": 1}]} and conf["prevResult"] == {"ips": []}
    # A capability the runtime does not give is left out.
    conf = CNIPlugins.plugin_conf(conflist, pm, RuntimeConf("i", "", "eth0"), None)
    assert "runtimeConfig" not in conf


def test_plugin_errors_read_as_errdefs(tmp_path: Path) -> None:
    def err(code: object, msg: str = "m", details: str = "") -> Exception:
        out = json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg, "details": details}).encode()
        return plugin_error("bridge", "ADD", out, b"", 1, "net")

    assert isinstance(err(1), FailedPrecondition) and isinstance(err(7), InvalidArgument)
    assert (
        isinstance(err(11), Unavailable)
        and isinstance(err(999), Unknown)
        and isinstance(err(120), FailedPrecondition)
    )
    assert isinstance(err("x"), Unknown)
    assert str(err(3, "no such", "more")) == "CNI plugin bridge ADD (network net): no such: more"
    e = plugin_error("bridge", "DEL", b"not json", b"panic: boom\n", 2)
    assert str(e) == "CNI plugin bridge DEL: panic: boom" and isinstance(e, Unknown)
    with pytest.raises(FailedPrecondition, match=r"'nope' is not installed in .*apt-get install"):
        CNIPlugins([str(tmp_path)]).find("nope")
    with pytest.raises(InvalidArgument):
        CNIPlugins([str(tmp_path)]).find("../bin/sh")


def test_chain_names_are_the_plugins() -> None:
    """As containernetworking/plugins' utils.MustFormatChainNameWithPrefix (values seen from
    the plugins 1.1.1 on this machine: network "exptest", container "c1")."""
    assert chain_name("exptest", "c1") == "CNI-df3d8b4a97b89ee7ff466a29"
    assert chain_name("exptest", "c1", "DN-") == "CNI-DN-df3d8b4a97b89ee7ff466"


def test_record_round_trip(tmp_path: Path) -> None:
    result = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "br0", "mac": "aa"},
            {"name": "veth1", "mac": "bb"},
            {"name": "eth0", "mac": "cc"},
        ],
        "ips": [{"interface": 2, "address": "10.4.0.2/24", "gateway": "10.4.0.1"}],
    }
    rec = Record(
        "default-web",
        str(tmp_path / "netns"),
        ["/usr/lib/cni"],
        [Attachment("bridge", "eth0", {"name": "bridge", "plugins": []}, [("IP", "10.4.0.2")], {}, result)],
        [P(80, 8080)],
    )
    path = tmp_path / "work" / "network.json"
    rec.save(path)
    assert Record.load(path) == rec
    assert addresses(result) == [
        {
            "address": "10.4.0.2/24",
            "ip": "10.4.0.2",
            "prefixlen": "24",
            "gateway": "10.4.0.1",
            "mac": "cc",
            "interface": "eth0",
        }
    ]
    assert Record.load(tmp_path / "missing.json") is None
    for bad in ("{", json.dumps({"version": 2}), json.dumps({"version": 1, "container_id": "x"})):
        path.write_text(bad)
        with pytest.raises(DamagedRecord, match="network record"):
            Record.load(path)
