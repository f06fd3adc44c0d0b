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
from ctrstore.cli._run_flags import (
    DockerExitCommand,
    ExecExitCommand,
    apply_run_flags,
    expand_env,
    net_mode,
    parse_mount,
    parse_volume,
    run_flag_options,
)
from ctrstore.client.containers import new_id_and_name
from ctrstore.images.platforms import Platform
from ctrstore.labels import OPEN_STDIN
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
    for opt in reversed(
        [
            click.option("--name", metavar="NAME", help="Container id (default: a random one)."),
            click.option(
                "--env", "-e", multiple=True, metavar="KEY[=VALUE]", help="Set an environment variable."
            ),
            click.option("--workdir", "-w", metavar="DIR", help="Working directory inside the container."),
            click.option("--user", "-u", metavar="USER[:GROUP]", help="User (name or uid) to run as."),
            click.option(
                "--net",
                "--network",
                default="private",
                show_default=True,
                metavar="MODE",
                help="bridge or private (a new namespace, loopback only for now), host, or none.",
            ),
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
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option(
    "--detach-keys", metavar="KEYS", help="Keys that detach from an -it container (default ctrl-p,ctrl-q)."
)
@click.option(
    "--sig-proxy/--no-sig-proxy", default=True, show_default=True, help="Pass signals to the container."
)
@_container_options
@run_flag_options
@click.argument("image")
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
        try:
            mgr.start(cid, on_exit=_rm_command(st, client.namespace, cid) if remove else None, fresh=True)
        except BaseException:
            mgr.delete(cid, force=True)
            raise
        click.echo(cid)
        return
    try:
        status = mgr.run_attached(cid, fresh=True, proxy_signals=sig_proxy, detach_keys=keys)
    except BaseException:
        if remove:
            mgr.delete(cid, force=True)
        raise
    if status is None:  # detached (ctrl-p ctrl-q): it runs on
        return
    if remove:
        mgr.delete(cid, force=True)
    sys.exit(status)


def _rm_command(st: State, namespace: str, cid: str) -> list[str]:
    """The command the shim runs when a ``run -d --rm`` container exits."""
    client = st.client()
    argv = [sys.executable, "-m", "ctrstore"]
    if client.config.source:
        argv += ["--config", client.config.source]
    argv += ["--root", str(client.root), "--state", str(client.state), "--namespace", namespace]
    return [*argv, "rm", "--force", cid]


@click.command("create", cls=DockerExitCommand, context_settings={"allow_interspersed_args": False})
@_container_options
@run_flag_options
@click.argument("image")
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
    net: str,
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
    mode = net_mode(net)
    opts = SpecOptions(
        args=list(command),
        env=expand_env(env),
        cwd=workdir,
        user=user,
        hostname=hostname,
        tty=tty,
        read_only=read_only,
        net=mode,
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
        cid, image, opts, snapshotter=snapshotter, name=cname, labels=labels, platform=platform
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


@click.command("exec", cls=ExecExitCommand, context_settings={"allow_interspersed_args": False})
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
        if not show_all and s.status not in ("running", "paused", "restarting"):
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
        elif s.status == "restarting":  # docker's: the last exit, and when
            status = f"Restarting ({s.exit_status}) {_since(s.exited_at)}".rstrip()
        else:
            status = s.status.capitalize()
        command = json.dumps(" ".join(args), ensure_ascii=False) if no_trunc else _command(args)
        created = _since(c.created_at) or "-"
        rows.append([cid, c.image, command, created, status, "", mgr.name_of(c)])
    if not quiet:
        table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)


@click.command("logs")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the container stops.")
@click.option("--tail", "-n", default="all", show_default=True, metavar="N", help="Only the last N lines.")
@click.option(
    "--since", metavar="TIME", help="Only lines from TIME on (2024-05-01T12:00:00Z, 10m, a Unix time)."
)
@click.option("--until", metavar="TIME", help="Only lines before TIME (same forms as --since).")
@click.option("--timestamps", "-t", is_flag=True, help="Start each line with its time (RFC 3339, ns).")
@click.argument("container")
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
                    "OOMKilled": s.oom_killed,
                },
                "RestartCount": s.restarts,
                "Bundle": str(mgr.bundle(cid)),
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
    """Make IMAGE from a container: its image's layers plus one with the container's changes.
    IMAGE is normalised as pull names images (app:1 is docker.io/library/app:1)."""
    from ctrstore.cli.images import new_image_name

    img = st.client().commit(
        container, new_image_name(image), compression="zstd" if compression == "zstd" else "gzip"
    )
    click.echo(img.target.digest)


containers = click.Group("containers", help="Containers (the same commands as at the top level).")
for _cmd in (create, ps, rm, inspect):
    containers.add_command(_cmd)
containers.add_command(ps, "ls")
