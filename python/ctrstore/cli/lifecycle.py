"""``restart``, ``pause``, ``unpause``, ``rename`` and ``attach``: a container's life after
``run``, as docker's commands of those names."""

from __future__ import annotations

import sys

import click

from ctrstore.cli._common import State, pass_state


@click.command("restart")
@click.option("--time", "-t", "timeout", default=10, show_default=True, help="Seconds before SIGKILL.")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def restart(st: State, timeout: int, ids: tuple[str, ...]) -> None:
    """Stop containers (their stop signal, SIGKILL after --time seconds) and start them again,
    detached, on the same snapshot."""
    mgr = st.client().containers
    for ref in ids:
        mgr.restart(mgr.resolve(ref), timeout)
        click.echo(ref)


@click.command("pause")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def pause(st: State, ids: tuple[str, ...]) -> None:
    """Freeze every process of running containers (the freezer cgroup)."""
    mgr = st.client().containers
    for ref in ids:
        mgr.pause(mgr.resolve(ref))
        click.echo(ref)


@click.command("unpause")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def unpause(st: State, ids: tuple[str, ...]) -> None:
    """Let paused containers run again."""
    mgr = st.client().containers
    for ref in ids:
        mgr.unpause(mgr.resolve(ref))
        click.echo(ref)


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@pass_state
def rename(st: State, container: str, new_name: str) -> None:
    """Give a container a new name (unused by any other container; its id stays)."""
    mgr = st.client().containers
    mgr.rename(mgr.resolve(container), new_name)


@click.command("attach")
@click.option("--no-stdin", is_flag=True, help="Do not send our stdin to the container.")
@click.option(
    "--sig-proxy/--no-sig-proxy", default=True, show_default=True, help="Pass signals to the container."
)
@click.option(
    "--detach-keys", metavar="KEYS", help="Keys that detach (default ctrl-p,ctrl-q; a terminal only)."
)
@click.argument("container")
@pass_state
def attach(st: State, no_stdin: bool, sig_proxy: bool, detach_keys: str | None, container: str) -> None:
    """Attach this terminal to a running container: see what it writes from now on and, if it
    was started with -i, type into it. Exits with its status when it stops; with a terminal
    (-t), ctrl-p ctrl-q detaches and leaves it running."""
    from ctrstore.cli._run_flags import parse_detach_keys

    mgr = st.client().containers
    status = mgr.attach(
        mgr.resolve(container),
        no_stdin=no_stdin,
        proxy_signals=sig_proxy,
        detach_keys=parse_detach_keys(detach_keys) if detach_keys else None,
    )
    if status is not None:
        sys.exit(status)
