"""``ctrstore network ls|create|rm|inspect|prune``, ``ctrstore port``, and the network flags
of ``run`` and ``create`` (``--network``, ``-p``, ``--ip``, ``--add-host``, ``--dns``...), as
docker and nerdctl spell them."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from ctrstore.cli._common import State, pass_state, printable, table
from ctrstore.errdefs import NotFound
from ctrstore.labels import parse_assignments
from ctrstore.network import NetworkOptions, parse_private_port

# --------------------------------------------------------------------------------------------
# run / create flags

_NETWORK_HELP = (
    "Connect the container to a network: bridge (the default network, on bridge ctrstore0, "
    "10.4.0.0/24), NAME (made with 'ctrstore network create'), host (the host's own network) "
    "or none (loopback only). Repeat to attach to several networks (eth0, eth1, ...). Rootless "
    "(as an ordinary user): slirp4netns (the default) or pasta (the default where slirp4netns is "
    "not installed), a namespace of the container's own served by that program, which also "
    "forwards -p. container:NAME joins the network namespace of that running container (its "
    "interfaces, ports, /etc/hosts, /etc/resolv.conf and host name; with it -p, -P, --expose, --ip, "
    "--hostname, --add-host and --dns* are conflicting options)."
)


def network_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the network flags to a ``run``/``create`` command; the command gets them as one
    ``network`` argument (a :class:`~ctrstore.network.NetworkOptions`)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["network"] = NetworkOptions.from_flags(
            kwargs.pop("net"),
            publish=kwargs.pop("publish"),
            ip=kwargs.pop("ip"),
            add_hosts=kwargs.pop("add_host"),
            dns=kwargs.pop("dns"),
            dns_search=kwargs.pop("dns_search"),
            dns_options=kwargs.pop("dns_option"),
            publish_all=kwargs.pop("publish_all"),
            expose=kwargs.pop("expose"),
            mac_address=kwargs.pop("mac_address"),
        )
        return f(*args, **kwargs)

    options = [
        click.option("--network", "--net", "net", multiple=True, metavar="NETWORK", help=_NETWORK_HELP),
        click.option(
            "--publish",
            "-p",
            multiple=True,
            metavar="PORT",
            help="Publish a container port on the host through the network's portmap (also on 127.0.0.1), "
            "as [IP:][HOST:]CONTAINER[/PROTO]: -p 8080:80 (all addresses), -p 127.0.0.1:8080:80, "
            "-p 80 (a free host port), -p 8000-8001:80-81, -p 53:53/udp.",
        ),
        click.option(
            "--publish-all",
            "-P",
            is_flag=True,
            help="Publish every port the image exposes (its EXPOSE, config ExposedPorts) and every --expose "
            "port on a free host port on every address, chosen again at each start, as -p PORT does; "
            "'ctrstore port NAME' shows which.",
        ),
        click.option(
            "--expose",
            multiple=True,
            metavar="PORT[/PROTO]",
            help="Expose a container port (or range, 8000-8009/udp) besides the image's: published by -P.",
        ),
        click.option(
            "--ip", metavar="IPv4", help="The container's address on its (one) network, e.g. 10.4.0.50."
        ),
        click.option(
            "--mac-address",
            metavar="MAC",
            help="The MAC address of the container's eth0 on its (first) network, a unicast address "
            "such as 02:42:ac:11:00:02 (set by the network's tuning plugin; not with --network "
            "host, none or container:).",
        ),
        click.option(
            "--add-host",
            multiple=True,
            metavar="NAME:IP",
            help="Add a line to the container's /etc/hosts; IP host-gateway is the host's address "
            "on the network. (On a CNI network, /etc/hosts also names every other running container "
            "of the same networks, as nerdctl's: ping NAME reaches it.)",
        ),
        click.option(
            "--dns",
            multiple=True,
            metavar="IP",
            help="Name server for /etc/resolv.conf (replaces the host's).",
        ),
        click.option(
            "--dns-search",
            multiple=True,
            metavar="DOMAIN",
            help="Search domain for /etc/resolv.conf ('.' for none).",
        ),
        click.option(
            "--dns-option",
            "--dns-opt",
            multiple=True,
            metavar="OPT",
            help="Option line for /etc/resolv.conf (ndots:2).",
        ),
    ]
    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


# --------------------------------------------------------------------------------------------
# ctrstore network


@click.group("network")
def network() -> None:
    """Networks containers are attached to (CNI conflists).

    \b
    The default network "bridge" (bridge ctrstore0, 10.4.0.0/24) is written to the network
    directory (/etc/ctrstore/cni/net.d; NETCONFPATH, or conf_dir of the
    io.ctrstore.network.v1.cni plugin) the first time a container needs it. "host" and
    "none" are pre-defined.
    """


@network.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the names.")
@pass_state
def ls(st: State, quiet: bool) -> None:
    """List networks, as nerdctl does (NETWORK ID, NAME, FILE)."""
    nets = st.client().networks.list()
    if quiet:
        for n in nets:
            click.echo(printable(n.name))
        return
    table(
        ["NETWORK ID", "NAME", "FILE"],
        [["" if n.pseudo else n.id[:12], n.name, str(n.file or "")] for n in nets],
    )


@network.command("create")
@click.option("--driver", "-d", default="bridge", show_default=True, help="Only bridge.")
@click.option(
    "--subnet", metavar="CIDR", help="Its IPv4 subnet (default: the first free /24 from 10.4.1.0/24)."
)
@click.option("--gateway", metavar="IP", help="The bridge's address (default: the subnet's first).")
@click.option("--ip-range", metavar="CIDR", help="Allocate container addresses from this part of the subnet.")
@click.option(
    "--internal",
    is_flag=True,
    help="No gateway, masquerade or published ports: containers talk among themselves.",
)
@click.option(
    "--opt",
    "-o",
    multiple=True,
    metavar="KEY=VALUE",
    help="com.docker.network.bridge.name=NAME (the bridge, default br-<id>) or mtu=N "
    "(com.docker.network.driver.mtu).",
)
@click.option("--label", multiple=True, metavar="KEY=VALUE", help="Label the network.")
@click.argument("name")
@pass_state
def create(
    st: State,
    driver: str,
    subnet: str | None,
    gateway: str | None,
    ip_range: str | None,
    internal: bool,
    opt: tuple[str, ...],
    label: tuple[str, ...],
    name: str,
) -> None:
    """Create bridge network NAME; prints its id."""
    if driver != "bridge":
        raise click.BadParameter(f"{driver!r}: only the bridge driver is supported", param_hint="--driver")
    bridge: str | None = None
    mtu = 0
    for key, value in parse_assignments(opt).items():
        if key in ("com.docker.network.bridge.name", "bridge"):
            bridge = value
        elif key in ("com.docker.network.driver.mtu", "mtu"):
            if not value.isdigit():
                raise click.BadParameter(f"mtu {value!r} is not a number", param_hint="--opt")
            mtu = int(value)
        else:
            raise click.BadParameter(f"unknown option {key!r}", param_hint="--opt")
    net = st.client().networks.create(
        name,
        subnet=subnet,
        gateway=gateway,
        ip_range=ip_range,
        bridge=bridge,
        internal=internal,
        mtu=mtu,
        labels=parse_assignments(label),
    )
    click.echo(net.id)


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@pass_state
def rm(st: State, names: tuple[str, ...]) -> None:
    """Remove networks: the file, the bridge and its rules. A network a container is on
    (running or not) is refused, as are host and none."""
    nets = st.client().networks
    for name in names:
        nets.remove(name)
        click.echo(printable(name))


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@pass_state
def inspect(st: State, names: tuple[str, ...]) -> None:
    """Show networks as JSON (docker's shape), with the containers attached to them now."""
    nets = st.client().networks
    out = [nets.inspect(nets.get(n)) for n in names]
    click.echo(json.dumps(out, indent=2))


@network.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not ask.")
@pass_state
def prune(st: State, force: bool) -> None:
    """Remove every network no container is on (not the default network)."""
    if not force and not click.confirm(
        "WARNING! This will remove all networks not used by at least one container.\n"
        "Are you sure you want to continue?",
        default=False,
    ):
        return
    removed = st.client().networks.prune()
    if removed:
        click.echo("Deleted Networks:")
        for name in removed:
            click.echo(printable(name))


# --------------------------------------------------------------------------------------------
# ctrstore port


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
@pass_state
def port(st: State, container: str, private_port: str | None) -> None:
    """List a container's published ports (as docker port): "80/tcp -> 0.0.0.0:8080", or for
    one PRIVATE_PORT only its host addresses."""
    mgr = st.client().containers
    cid = mgr.resolve(container)
    ports = mgr.ports(cid)
    if private_port is None:
        for p in sorted(ports, key=lambda p: (p.container_port, p.protocol)):
            if p.host_port:
                click.echo(f"{p.private} -> {p.public}")
        return
    number, proto = parse_private_port(private_port)
    found = [p for p in ports if p.container_port == number and p.protocol == proto and p.host_port]
    if not found:
        raise NotFound(f"no public port '{number}/{proto}' published for {container}")
    for p in found:
        click.echo(p.public)
    sys.stdout.flush()
