"""``ctrstore leases``."""

from __future__ import annotations

from datetime import timedelta

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, labels_text, pass_state
from ctrstore.cli._format import format_option, write_table
from ctrstore.labels import parse_assignments


@click.group("leases", cls=AliasGroup)
def leases() -> None:
    """Leases: named holds that keep resources from gc."""


@leases.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the ids.")
@format_option
@click.argument("filters", nargs=-1)
@pass_state
def ls(st: State, quiet: bool, fmt: str | None, filters: tuple[str, ...]) -> None:
    """List leases (filter on `id` and `labels`)."""
    items = st.client().leases.list(*filters)
    if quiet:
        for lease in items:
            click.echo(lease.id)
        return
    write_table(
        ["ID", "CREATED AT", "LABELS"],
        [[x.id, x.created_at.isoformat(), labels_text(x.labels)] for x in items],
        fmt,
    )


@leases.command("create")
@click.option("--id", "lease_id", metavar="ID", help="Lease id (random if omitted).")
@click.option(
    "--expires",
    "-x",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Expire after this many seconds (default: never).",
)
@click.argument("labels", nargs=-1)
@pass_state
def create(st: State, lease_id: str | None, expires: int | None, labels: tuple[str, ...]) -> None:
    """Create a lease, with optional KEY=VALUE labels; prints its id."""
    expire = timedelta(seconds=expires) if expires else None
    lease = st.client().leases.create(lease_id, labels=parse_assignments(labels), expire=expire)
    click.echo(lease.id)


@leases.command("rm")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def rm(st: State, ids: tuple[str, ...]) -> None:
    """Delete leases (what they held becomes collectable)."""
    mgr = st.client().leases
    for i in ids:
        mgr.delete(i)
        click.echo(i)


@leases.command("resources")
@click.argument("lease_id")
@format_option
@pass_state
def resources(st: State, lease_id: str, fmt: str | None) -> None:
    """List what a lease holds."""
    write_table(["TYPE", "ID"], [[r.type, r.id] for r in st.client().leases.resources(lease_id)], fmt)
