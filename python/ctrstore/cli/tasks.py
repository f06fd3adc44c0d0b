"""``ctrstore tasks`` (ctr's ``t``): containers' processes, as ``ctr tasks`` shows them. The
same operations are the top-level ``start``, ``kill``, ``exec``, ``ps``; this group is for
ctr's users."""

from __future__ import annotations

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, pass_state, table


@click.group("tasks", cls=AliasGroup)
def tasks() -> None:
    """Tasks: the running processes of containers (ctr's `tasks`, `t`)."""


@tasks.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the container ids.")
@pass_state
def ls(st: State, quiet: bool) -> None:
    """List the containers' tasks: TASK, PID, STATUS (created, running, paused, stopped)."""
    mgr = st.client().containers
    rows = []
    for c in mgr.store.list():
        s = mgr.tasks.status(c.id)  # the runtime's words (ctr's), not docker's
        if s.status == "unknown":
            continue  # no task: never started, or its state is gone
        if quiet:
            click.echo(c.id)
            continue
        rows.append([c.id, s.pid, s.status.upper()])
    if not quiet:
        table(["TASK", "PID", "STATUS"], rows)


@tasks.command("start")
@click.argument("container")
@pass_state
def start(st: State, container: str) -> None:
    """Start a container's task in the background."""
    mgr = st.client().containers
    mgr.start(mgr.resolve(container))


@tasks.command("kill")
@click.option("--signal", "-s", "sig", default="SIGTERM", show_default=True)
@click.option("--all", "-a", "all_", is_flag=True, help="Send the signal to every process of the task.")
@click.argument("container")
@pass_state
def kill(st: State, sig: str, all_: bool, container: str) -> None:
    """Signal a container's task (SIGTERM unless -s)."""
    mgr = st.client().containers
    name = sig.upper()
    if not (name.startswith("SIG") or name.isdigit()):
        name = f"SIG{name}"
    mgr.kill(mgr.resolve(container), name, all_processes=all_)


@tasks.command("rm")
@click.option("--force", "-f", is_flag=True, help="Kill a running task first.")
@click.argument("container")
@pass_state
def rm(st: State, force: bool, container: str) -> None:
    """Delete a container's stopped task (its record and snapshot stay: see `rm`)."""
    mgr = st.client().containers
    cid = mgr.resolve(container)
    c = mgr.store.get(cid)
    mgr.tasks.delete(cid, c.spec, force=force)
