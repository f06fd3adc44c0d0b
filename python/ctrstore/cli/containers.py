"""Containers, shaped like nerdctl: ``run``, ``create``, ``start``, ``exec``, ``ps``, ``logs``,
``stop``, ``kill``, ``rm``, ``inspect``, ``wait``, ``commit``. ``ps`` and ``inspect`` print
docker's fields (``ctrstore.client.dockercompat``) through ``ctrstore.cli._format``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from ctrstore._timeutil import now
from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, pass_state, printable
from ctrstore.cli._format import Listing, format_option, write_list
from ctrstore.cli._prune import prune_options
from ctrstore.cli._run_flags import (
    DockerExitCommand,
    ExecExitCommand,
    apply_run_flags,
    expand_env,
    parse_mount,
    parse_volume,
    run_flag_options,
)
from ctrstore.cli.network import network_flags
from ctrstore.cli.objects import ObjectKind, complete, inspect_command
from ctrstore.client.containers import UP_STATES, new_id_and_name
from ctrstore.images.platforms import Platform
from ctrstore.labels import OPEN_STDIN
from ctrstore.network import NetworkOptions
from ctrstore.oci.spec import SpecOptions


def _command(args: list[str]) -> str:
    """nerdctl's COMMAND column: the args joined, cut to 20 characters with an ellipsis, quoted."""
    cmd = " ".join(args)
    if len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return json.dumps(cmd, ensure_ascii=False)


def _container_options(f: Callable[..., None]) -> Callable[..., None]:
    f = network_flags(f)  # (first: its options come last in --help)
    for opt in reversed(
        [
            click.option("--name", metavar="NAME", help="Container id (default: a random one)."),
            click.option(
                "--env", "-e", multiple=True, metavar="KEY[=VALUE]", help="Set an environment variable."
            ),
            click.option("--workdir", "-w", metavar="DIR", help="Working directory inside the container."),
            click.option("--user", "-u", metavar="USER[:GROUP]", help="User (name or uid) to run as."),
            click.option(
                "--volume",
                "-v",
                "volumes",
                multiple=True,
                metavar="[SRC:]CTR[:OPTS]",
                help="Bind-mount a host path (/host:/ctr), mount a named volume (NAME:/ctr, created "
                "on first use and filled from the image), or an anonymous volume (/ctr). OPTS: ro, "
                "nocopy, propagation.",
            ),
            click.option(
                "--mount",
                "mounts",
                multiple=True,
                metavar="type=bind|volume,source=,target=[,readonly]",
                help="Mount, in docker's --mount syntax (bind or volume).",
            ),
            click.option("--tty", "-t", is_flag=True, help="Allocate a pseudo-terminal."),
            click.option(
                "--interactive", "-i", is_flag=True, help="Send stdin to it (with -d: kept open for attach)."
            ),
            click.option("--read-only", is_flag=True, help="Mount the root file system read-only."),
            click.option("--hostname", "-h", metavar="NAME", help="Container host name."),
            click.option("--snapshotter", metavar="NAME", help="overlayfs (default), native or btrfs."),
        ]
    ):
        f = opt(f)
    return f


@click.command("run", cls=DockerExitCommand, context_settings={"allow_interspersed_args": False})
@click.option("--detach", "-d", is_flag=True, help="Run in the background and print the container id.")
@click.option(
    "--rm", "remove", is_flag=True, help="Remove the container, and its anonymous volumes, when it exits."
)
@click.option(
    "--detach-keys", metavar="KEYS", help="Keys that detach from an -it container (default ctrl-p,ctrl-q)."
)
@click.option(
    "--sig-proxy/--no-sig-proxy", default=True, show_default=True, help="Pass signals to the container."
)
@_container_options
@run_flag_options
@click.argument("image", shell_complete=complete("image"))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_state
def run(
    st: State,
    /,
    detach: bool,
    remove: bool,
    detach_keys: str | None,
    sig_proxy: bool,
    **create_args: Any,
) -> None:
    """Run COMMAND in a new container from IMAGE, pulling IMAGE first if it is not here.

    IMAGE is named as docker names it: alpine, alpine:3, docker.io/library/alpine:latest,
    name@sha256:..., or an image ID prefix. The container's root file system is an overlay of
    the image's layers with a new writable snapshot on top; what the container writes lands
    in that snapshot. Without -d, ctrstore stays attached to it (with -i, stdin goes to it)
    and exits with its status; its output is logged either way (ctrstore logs).

    \b
    Exit status: the command's; 125 if ctrstore fails (a bad flag, no such image), 126 if
    the command cannot be run, 127 if it does not exist.

    \b
    Networking, as docker's: the container is on the default network "bridge" (its own
    namespace, an address from 10.4.0.0/24, the host reachable as the gateway) unless
    --network says otherwise; -p publishes its ports on the host. It gets /etc/hosts,
    /etc/hostname and /etc/resolv.conf of its own (the host's name servers, or --dns):
      ctrstore run -d -p 8080:80 --name web IMAGE httpd -f -p 80   (curl 127.0.0.1:8080)
      ctrstore run --rm --network none IMAGE ip addr               (loopback only)
    """
    from ctrstore.cli._run_flags import parse_detach_keys

    if remove and create_args.get("restart") not in (None, "", "no"):
        raise click.UsageError(
            "--rm and --restart cannot be used together (a removed container cannot restart)"
        )
    keys = parse_detach_keys(detach_keys) if detach_keys else None
    client = st.client()
    mgr = client.containers
    cid = _create(st, **create_args)
    if detach:
        from ctrstore.client.api import remove_command

        try:
            mgr.start(cid, on_exit=remove_command(client, cid) if remove else None, fresh=True)
        except BaseException:
            mgr.delete(cid, force=True, volumes=True)
            raise
        click.echo(cid)
        return
    try:
        status = mgr.run_attached(cid, fresh=True, proxy_signals=sig_proxy, detach_keys=keys)
    except BaseException:
        if remove:
            mgr.delete(cid, force=True, volumes=True)
        raise
    if status is None:  # detached (ctrl-p ctrl-q): it runs on
        return
    if remove:
        mgr.delete(cid, force=True, volumes=True)
    sys.exit(status)


@click.command("create", cls=DockerExitCommand, context_settings={"allow_interspersed_args": False})
@_container_options
@run_flag_options
@click.argument("image", shell_complete=complete("image"))
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_state
def create(st: State, /, **create_args: Any) -> None:
    """Create a container from IMAGE (pulled first if it is not here) without starting it;
    prints its id. Takes run's flags."""
    click.echo(_create(st, **create_args))


def _create(
    st: State,
    *,
    name: str | None,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    network: NetworkOptions,
    volumes: tuple[str, ...],
    mounts: tuple[str, ...],
    tty: bool,
    interactive: bool,
    read_only: bool,
    hostname: str | None,
    snapshotter: str | None,
    image: str,
    command: tuple[str, ...],
    **flags: Any,
) -> str:
    """What ``run`` and ``create`` share: the options of _container_options and
    run_flag_options, made into a container (its image pulled as --pull says); returns its
    id."""
    opts = SpecOptions(
        args=list(command),
        env=expand_env(env),
        cwd=workdir,
        user=user,
        hostname=hostname,
        tty=tty,
        read_only=read_only,
        mounts=[parse_volume(v) for v in volumes] + [parse_mount(m) for m in mounts],
    )
    labels = apply_run_flags(opts, flags)
    if interactive:
        labels[OPEN_STDIN] = "true"
    platform = Platform.parse(flags["platform"]) if flags.get("platform") else None
    if name:
        st.client().containers.check_name_free(name)
    image = _image_for_run(
        st,
        image,
        platform=platform,
        snapshotter=snapshotter,
        pull=flags.get("pull", "missing"),
        quiet=bool(flags.get("quiet")),
        plain_http=bool(flags.get("plain_http")),
        hosts_dir=flags.get("hosts_dir"),
    )
    cid, cname = new_id_and_name(name, image)
    st.client().containers.create(
        cid,
        image,
        opts,
        snapshotter=snapshotter,
        name=cname,
        labels=labels,
        platform=platform,
        network=network,
    )
    return cid


def _image_for_run(
    st: State,
    ref: str,
    *,
    platform: Platform | None,
    snapshotter: str | None,
    pull: str = "missing",
    quiet: bool = False,
    plain_http: bool = False,
    hosts_dir: str | None = None,
) -> str:
    """The stored name of the image ``run``/``create`` use: ``ref`` as users name images, pulled
    (its progress on stderr) if it is not here (``--pull missing``), always (``always``) or
    never (``never``: not here is an error)."""
    from ctrstore.cli._progress import ProgressView
    from ctrstore.errdefs import NotFound

    client = st.client()
    if pull != "always":
        try:
            return client.images.lookup(ref).name
        except NotFound:
            if pull == "never":
                raise NotFound(f"no such image: {ref} (and --pull never)") from None
        if not quiet:
            click.echo(f"Unable to find image '{ref}' locally", err=True)
    with ProgressView("quiet" if quiet else "auto", file=sys.stderr) as view:
        result = client.pull(
            ref,
            platform=platform,
            snapshotter=snapshotter,
            plain_http=plain_http,
            hosts_dir=hosts_dir,
            progress=view,
        )
    return result.image.name


@click.command("start")
@click.option("--attach", "-a", is_flag=True, help="Attach to the container and exit with its status.")
@click.argument("ids", nargs=-1, required=True, shell_complete=complete("container"))
@pass_state
def start(st: State, attach: bool, ids: tuple[str, ...]) -> None:
    """Start created (or stopped) containers."""
    mgr = st.client().containers
    for ref in ids:
        cid = mgr.resolve(ref)
        if attach:
            sys.exit(mgr.run_attached(cid))
        mgr.start(cid)
        click.echo(ref)


@click.command("exec", cls=ExecExitCommand, context_settings={"allow_interspersed_args": False})
@click.option("--tty", "-t", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--interactive", "-i", is_flag=True, help="Keep stdin open.")
@click.option("--detach", "-d", is_flag=True, help="Run in the background.")
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE")
@click.option("--workdir", "-w", metavar="DIR")
@click.option("--user", "-u", metavar="UID[:GID]")
@click.argument("container", shell_complete=complete("container"))
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_state
def exec_(
    st: State,
    tty: bool,
    interactive: bool,
    detach: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in a running container; exits with its status (126 if it cannot be run,
    127 if it does not exist, 1 if ctrstore fails)."""
    mgr = st.client().containers
    status = mgr.exec(
        mgr.resolve(container),
        list(command),
        tty=tty,
        env=expand_env(env),
        cwd=workdir,
        user=user,
        detach=detach,
    )
    sys.exit(status)


PS = Listing(
    default="table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
    headers={
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Size": "SIZE",
        "Names": "NAMES",
        "Labels": "LABELS",
        "Mounts": "MOUNTS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Networks": "NETWORKS",
    },
)


def _ports_text(ports: dict[str, Any]) -> str:
    """docker's PORTS: ``0.0.0.0:8080->80/tcp, 443/tcp``."""
    out = []
    for key, bindings in sorted(ports.items()):
        if not bindings:
            out.append(key)
        for b in bindings or []:
            out.append(f"{b.get('HostIp', '')}:{b.get('HostPort', '')}->{key}")
    return ", ".join(out)


def _ps_row(s: dict[str, Any], trunc: bool) -> dict[str, Any]:
    """docker's ``ps`` fields (its formatter's ``ContainerContext``) of a container summary;
    keys sorted, as docker's ``{{json .}}`` has them."""
    from ctrstore.client.dockercompat import familiar, go_time, human_duration, human_size

    labels: dict[str, str] = s["Labels"]
    args = s["Command"].split(" ") if s["Command"] else []
    created = datetime.fromtimestamp(s["Created"], UTC)
    mounts = [m.get("Name") or m["Source"] for m in s["Mounts"]]
    size = "0B"
    if "SizeRw" in s:
        size = human_size(s["SizeRw"], 3)
        if s["SizeRootFs"] > 0:
            size += f" (virtual {human_size(s['SizeRootFs'], 3)})"
    image = s["Image"]
    if trunc:
        image = familiar(image)
    return {
        "Command": _command(args) if trunc else json.dumps(s["Command"], ensure_ascii=False),
        "CreatedAt": go_time(created),
        "ID": s["Id"][:12] if trunc else s["Id"],
        "Image": image,
        "Label": lambda key: labels.get(str(key), ""),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in s["Mounts"] if m.get("Driver") == "local")),
        "Mounts": ",".join(_ellipsis(m, 15) if trunc else m for m in mounts),
        "Names": s["Names"][0].lstrip("/"),
        "Networks": ",".join(sorted(s["NetworkSettings"]["Networks"])),
        "Ports": _ports_text(s["PortBindings"]),
        "RunningFor": human_duration(max((now() - created).total_seconds(), 0)) + " ago",
        "Size": size,
        "State": s["State"],
        "Status": s["Status"],
    }


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("ps")
@click.option("--all", "-a", "show_all", is_flag=True, help="Show every container (default: running ones).")
@click.option("--quiet", "-q", is_flag=True, help="Print only ids (whole, so that each names one container).")
@click.option("--no-trunc", is_flag=True, help="Do not cut ids, images and commands short.")
@click.option(
    "--filter",
    "-f",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="id, name, label, exited, status, ancestor, before, since, volume, network (docker's).",
)
@click.option(
    "--last", "-n", type=click.IntRange(min=-1), default=-1, help="Show the N last created (any state)."
)
@click.option("--latest", "-l", is_flag=True, help="Show the last created container (any state).")
@click.option("--size", "-s", is_flag=True, help="Show the size of each container's writable layer.")
@format_option
@pass_state
def ps(
    st: State,
    show_all: bool,
    quiet: bool,
    no_trunc: bool,
    filters: tuple[str, ...],
    last: int,
    latest: bool,
    size: bool,
    fmt: str | None,
) -> None:
    """List containers (running ones unless -a), newest first, as docker ps does.

    \b
      ctrstore ps -a --filter status=exited --filter label=app=web
      ctrstore ps --format '{{.Names}}\\t{{.Status}}'
      ctrstore ps -a --format json | jq -r .Names
    """
    from ctrstore.client.dockercompat import ContainerFilter, container_summary

    client = st.client()
    mgr = client.containers
    flt = ContainerFilter.parse(filters)
    containers = mgr.store.list()
    containers.sort(key=lambda c: (c.created_at is not None, c.created_at), reverse=True)
    if latest:
        last = 1
    if last >= 0:
        containers = containers[:last]
        show_all = True
    show_all = show_all or flt.needs_all()
    want_size = size or (fmt is not None and ".Size" in fmt)
    created = {c.id: c.created_at for c in mgr.store.list()}
    match = flt.matcher(client, created)
    rows = []
    for c in containers:
        s = mgr.status(c.id)
        if not show_all and s.status not in UP_STATES:
            continue
        summary = container_summary(client, c, s, size=want_size)
        if not match(summary):
            continue
        if quiet and fmt in (None, "", "table"):
            click.echo(printable(c.id))
            continue
        rows.append(_ps_row(summary, not no_trunc))
    if quiet and fmt in (None, "", "table"):
        return
    listing = PS
    if size and fmt in (None, "", "table"):
        listing = Listing(PS.default + "\t{{.Size}}", PS.headers)
    write_list(rows, fmt, listing, trunc=not no_trunc)


@click.command("logs")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the container stops.")
@click.option("--tail", "-n", default="all", show_default=True, metavar="N", help="Only the last N lines.")
@click.option(
    "--since", metavar="TIME", help="Only lines from TIME on (2024-05-01T12:00:00Z, 10m, a Unix time)."
)
@click.option("--until", metavar="TIME", help="Only lines before TIME (same forms as --since).")
@click.option("--timestamps", "-t", is_flag=True, help="Start each line with its time (RFC 3339, ns).")
@click.argument("container", shell_complete=complete("container"))
@pass_state
def logs(
    st: State,
    follow: bool,
    tail: str,
    since: str | None,
    until: str | None,
    timestamps: bool,
    container: str,
) -> None:
    """Print what a container wrote: its stdout to stdout, its stderr to stderr.

    Every run is logged, attached or not, line by line with the time it was written (the
    json-file format docker and nerdctl use).
    """
    from ctrstore.client.containers import parse_log_time

    if tail != "all" and not (tail.isdigit() or tail == "-1"):
        raise click.BadParameter(f"{tail!r}: give a number of lines or all", param_hint="--tail")
    mgr = st.client().containers
    entries = mgr.log_entries(
        mgr.resolve(container),
        follow=follow,
        since_ns=parse_log_time(since) if since else None,
        until_ns=parse_log_time(until) if until else None,
        tail=None if tail in ("all", "-1") else int(tail),
    )
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for e in entries:
        out = outs[e.stream]
        if timestamps:
            out.write(e.time.encode() + b" ")
        out.write(e.data)
        out.flush()


@click.command("stop")
@click.option("--time", "-t", "timeout", default=10, show_default=True, help="Seconds before SIGKILL.")
@click.argument("ids", nargs=-1, required=True, shell_complete=complete("container"))
@pass_state
def stop(st: State, timeout: int, ids: tuple[str, ...]) -> None:
    """Stop containers: SIGTERM, then SIGKILL after --time seconds."""
    mgr = st.client().containers
    for ref in ids:
        mgr.stop(mgr.resolve(ref), timeout)
        click.echo(ref)


@click.command("kill")
@click.option("--signal", "-s", "sig", default="SIGKILL", show_default=True)
@click.argument("ids", nargs=-1, required=True, shell_complete=complete("container"))
@pass_state
def kill(st: State, sig: str, ids: tuple[str, ...]) -> None:
    """Send a signal to containers' processes."""
    mgr = st.client().containers
    name = sig.upper()
    if not (name.startswith("SIG") or name.isdigit()):
        name = f"SIG{name}"
    for ref in ids:
        mgr.kill(mgr.resolve(ref), name)
        click.echo(ref)


@click.command("rm")
@click.option("--force", "-f", is_flag=True, help="Kill running containers first.")
@click.option(
    "--volumes", "-v", is_flag=True, help="Remove the anonymous volumes made for them too (named ones stay)."
)
@click.argument("ids", nargs=-1, required=True, shell_complete=complete("container"))
@pass_state
def rm(st: State, force: bool, volumes: bool, ids: tuple[str, ...]) -> None:
    """Remove containers: their mount, bundle, snapshot and record."""
    mgr = st.client().containers
    for ref in ids:
        mgr.delete(mgr.resolve(ref), force=force, volumes=volumes)
        click.echo(ref)


def _inspect_container(st: State, ref: str, size: bool) -> dict[str, Any]:
    from ctrstore.client.dockercompat import container_inspect

    client = st.client()
    return container_inspect(client, client.containers.resolve(ref), size=size)


def _container_names(st: State) -> list[str]:
    mgr = st.client().containers
    return [mgr.name_of(c) for c in mgr.store.list()]


CONTAINER = ObjectKind("container", inspect=_inspect_container, names=_container_names)
"""Containers in ``ctrstore inspect`` and shell completion (see ``ctrstore.cli.objects``)."""

inspect = inspect_command("container", help="Show containers as docker's JSON (or through --format).")


@click.command("wait")
@click.argument("ids", nargs=-1, required=True, shell_complete=complete("container"))
@pass_state
def wait(st: State, ids: tuple[str, ...]) -> None:
    """Wait for containers to stop; print their exit statuses."""
    mgr = st.client().containers
    for ref in ids:
        click.echo(mgr.wait(mgr.resolve(ref)))


@click.command("commit")
@click.option("--compression", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True)
@click.argument("container", shell_complete=complete("container"))
@click.argument("image", shell_complete=complete("image"))
@pass_state
def commit(st: State, compression: str, container: str, image: str) -> None:
    """Make IMAGE from a container: its image's layers plus one with the container's changes.
    IMAGE is normalised as pull names images (app:1 is docker.io/library/app:1)."""
    from ctrstore.cli.images import new_image_name

    img = st.client().commit(
        container, new_image_name(image), compression="zstd" if compression == "zstd" else "gzip"
    )
    click.echo(img.target.digest)


@click.command("prune")
@prune_options
@pass_state
def prune(st: State, force: bool, filters: tuple[str, ...]) -> None:
    """Remove every stopped container and free the space of their writable layers."""
    from ctrstore.cli._prune import confirm, print_prune
    from ctrstore.client.housekeeping import prune_containers

    confirm("WARNING! This will remove all stopped containers.", force)
    print_prune(prune_containers(st.client(), filters=filters), "Deleted Containers")


containers = AliasGroup("containers", help="Containers (the same commands as at the top level).")
for _cmd in (create, ps, rm, inspect, prune):
    containers.add_command(_cmd)
containers.add_command(ps, "ls")
