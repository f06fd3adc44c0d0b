"""Containers, shaped like nerdctl: ``run``, ``create``, ``start``, ``exec``, ``ps``, ``logs``,
``stop``, ``kill``, ``rm``, ``inspect``, ``wait``, ``commit``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from ctrstore.cli._common import State, pass_state, table
from ctrstore.cli._run_flags import expand_env, parse_mount, parse_volume
from ctrstore.cli.network import network_flags
from ctrstore.client.containers import new_id_and_name
from ctrstore.network import NetworkOptions, format_ports
from ctrstore.oci.spec import SpecOptions


def _human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration`` (``Less than a second``, ``About a minute``, ...)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = round(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _since(t: datetime | str | None) -> str:
    from ctrstore._timeutil import now, parse_rfc3339

    if t is None:
        return ""
    when = parse_rfc3339(t) if isinstance(t, str) else t
    return _human_duration(max((now() - when).total_seconds(), 0)) + " ago"


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
                metavar="HOST:CTR[:ro]",
                help="Bind-mount a host path.",
            ),
            click.option(
                "--mount",
                "mounts",
                multiple=True,
                metavar="type=bind,source=,target=[,readonly]",
                help="Mount, in docker's --mount syntax (bind only).",
            ),
            click.option("--tty", "-t", is_flag=True, help="Allocate a pseudo-terminal."),
            click.option(
                "--interactive", "-i", is_flag=True, help="Keep stdin open (attached runs always do)."
            ),
            click.option("--read-only", is_flag=True, help="Mount the root file system read-only."),
            click.option("--hostname", "-h", metavar="NAME", help="Container host name."),
            click.option("--snapshotter", metavar="NAME", help="overlayfs (default), native or btrfs."),
        ]
    ):
        f = opt(f)
    return f


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("--detach", "-d", is_flag=True, help="Run in the background and print the container id.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@_container_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_state
def run(st: State, /, detach: bool, remove: bool, **create_args: Any) -> None:
    """Run COMMAND in a new container from IMAGE (pulled or imported before).

    The container's root file system is an overlay of the image's layers with a new writable
    snapshot on top; what the container writes lands in that snapshot. Without -d the command
    is attached to this terminal and ctrstore exits with its exit status.

    \b
    Networking, as docker's: the container is on the default network "bridge" (its own
    namespace, an address from 10.4.0.0/24, the host reachable as the gateway) unless
    --network says otherwise; -p publishes its ports on the host. It gets /etc/hosts,
    /etc/hostname and /etc/resolv.conf of its own (the host's name servers, or --dns):
      ctrstore run -d -p 8080:80 --name web IMAGE httpd -f -p 80   (curl 127.0.0.1:8080)
      ctrstore run --rm --network none IMAGE ip addr               (loopback only)
    """
    client = st.client()
    mgr = client.containers
    cid = _create(st, **create_args)
    if detach:
        try:
            mgr.start(cid, on_exit=_rm_command(st, client.namespace, cid) if remove else None)
        except BaseException:
            mgr.delete(cid, force=True)
            raise
        click.echo(cid)
        return
    try:
        status = mgr.run_attached(cid, fresh=True)
    except BaseException:
        if remove:
            mgr.delete(cid, force=True)
        raise
    if remove:  # `runc run` deleted its task when the process exited
        mgr.delete(cid, force=True, task_gone=True)
    sys.exit(status)


def _rm_command(st: State, namespace: str, cid: str) -> list[str]:
    """The command the shim runs when a ``run -d --rm`` container exits."""
    client = st.client()
    argv = [sys.executable, "-m", "ctrstore"]
    if client.config.source:
        argv += ["--config", client.config.source]
    argv += ["--root", str(client.root), "--state", str(client.state), "--namespace", namespace]
    return [*argv, "rm", "--force", cid]


@click.command("create", context_settings={"allow_interspersed_args": False})
@_container_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_state
def create(st: State, /, **create_args: Any) -> None:
    """Create a container from IMAGE without starting it; prints its id."""
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
) -> str:
    """What ``run`` and ``create`` share: the options of _container_options, made into a
    container; returns its id."""
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
    cid, cname = new_id_and_name(name, image)
    st.client().containers.create(cid, image, opts, snapshotter=snapshotter, name=cname, network=network)
    return cid


@click.command("start")
@click.option("--attach", "-a", is_flag=True, help="Attach to the container and exit with its status.")
@click.argument("ids", nargs=-1, required=True)
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


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("--tty", "-t", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--interactive", "-i", is_flag=True, help="Keep stdin open.")
@click.option("--detach", "-d", is_flag=True, help="Run in the background.")
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE")
@click.option("--workdir", "-w", metavar="DIR")
@click.option("--user", "-u", metavar="UID[:GID]")
@click.argument("container")
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
    """Run COMMAND in a running container; exits with its status."""
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


@click.command("ps")
@click.option("--all", "-a", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("--quiet", "-q", is_flag=True, help="Print only ids.")
@click.option("--no-trunc", is_flag=True, help="Do not cut ids and commands short.")
@pass_state
def ps(st: State, show_all: bool, quiet: bool, no_trunc: bool) -> None:
    """List containers (running ones unless -a), newest first, as nerdctl ps does."""
    mgr = st.client().containers
    rows = []
    containers = mgr.store.list()
    containers.sort(key=lambda c: (c.created_at is not None, c.created_at), reverse=True)
    for c in containers:
        s = mgr.status(c.id)
        if not show_all and s.status not in ("running", "paused"):
            continue
        cid = c.id if no_trunc else c.id[:12]
        if quiet:
            click.echo(c.id)
            continue
        args = [str(a) for a in c.spec.get("process", {}).get("args", [])]
        if s.status == "stopped":
            code = "?" if s.exit_status is None else s.exit_status
            status = f"Exited ({code}) {_since(s.exited_at)}".rstrip()
        elif s.status == "running":
            status = "Up"
        else:
            status = s.status.capitalize()
        command = json.dumps(" ".join(args), ensure_ascii=False) if no_trunc else _command(args)
        created = _since(c.created_at) or "-"
        ports = format_ports(mgr.ports(c.id)) if s.status in ("running", "paused") else ""
        rows.append([cid, c.image, command, created, status, ports, mgr.name_of(c)])
    if not quiet:
        table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)


@click.command("logs")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the container stops.")
@click.argument("container")
@pass_state
def logs(st: State, follow: bool, container: str) -> None:
    """Print what a detached container wrote to stdout and stderr."""
    out = sys.stdout.buffer
    mgr = st.client().containers
    for chunk in mgr.logs(mgr.resolve(container), follow=follow):
        out.write(chunk)
        out.flush()


@click.command("stop")
@click.option("--time", "-t", "timeout", default=10, show_default=True, help="Seconds before SIGKILL.")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def stop(st: State, timeout: int, ids: tuple[str, ...]) -> None:
    """Stop containers: SIGTERM, then SIGKILL after --time seconds."""
    mgr = st.client().containers
    for ref in ids:
        mgr.stop(mgr.resolve(ref), timeout)
        click.echo(ref)


@click.command("kill")
@click.option("--signal", "-s", "sig", default="SIGKILL", show_default=True)
@click.argument("ids", nargs=-1, required=True)
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
@click.argument("ids", nargs=-1, required=True)
@pass_state
def rm(st: State, force: bool, ids: tuple[str, ...]) -> None:
    """Remove containers: their mount, bundle, snapshot and record."""
    mgr = st.client().containers
    for ref in ids:
        mgr.delete(mgr.resolve(ref), force=force)
        click.echo(ref)


@click.command("inspect")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def inspect(st: State, ids: tuple[str, ...]) -> None:
    """Show containers' records and task status as JSON."""
    mgr = st.client().containers
    out = []
    for ref in ids:
        cid = mgr.resolve(ref)
        c = mgr.store.get(cid)
        s = mgr.status(cid)
        out.append(
            {
                "ID": c.id,
                "Name": mgr.name_of(c),
                "Image": c.image,
                "Snapshotter": c.snapshotter,
                "SnapshotKey": c.snapshot_key,
                "Runtime": c.runtime,
                "Labels": c.labels,
                "CreatedAt": c.created_at.isoformat() if c.created_at else None,
                "State": {
                    "Status": s.status,
                    "Pid": s.pid,
                    "ExitCode": s.exit_status,
                    "FinishedAt": s.exited_at,
                },
                "Bundle": str(mgr.bundle(cid)),
                "NetworkSettings": mgr.network_settings(cid),
                "Spec": c.spec,
            }
        )
    click.echo(json.dumps(out, indent=2))


@click.command("wait")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def wait(st: State, ids: tuple[str, ...]) -> None:
    """Wait for containers to stop; print their exit statuses."""
    mgr = st.client().containers
    for ref in ids:
        click.echo(mgr.wait(mgr.resolve(ref)))


@click.command("commit")
@click.option("--compression", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True)
@click.argument("container")
@click.argument("image")
@pass_state
def commit(st: State, compression: str, container: str, image: str) -> None:
    """Make IMAGE from a container: its image's layers plus one with the container's changes."""
    img = st.client().commit(container, image, compression="zstd" if compression == "zstd" else "gzip")
    click.echo(img.target.digest)


containers = click.Group("containers", help="Containers (the same commands as at the top level).")
for _cmd in (create, ps, rm, inspect):
    containers.add_command(_cmd)
containers.add_command(ps, "ls")
