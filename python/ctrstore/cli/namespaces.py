"""``ctrstore namespaces``."""

from __future__ import annotations

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, labels_text, pass_state
from ctrstore.cli._format import format_option, write_table
from ctrstore.labels import parse_assignments


@click.group("namespaces", cls=AliasGroup)
def namespaces() -> None:
    """Namespaces: separate sets of images, blob records, leases and containers.

    Blobs are stored once on disk and visible in each namespace that holds them.
    """


@namespaces.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the names.")
@format_option
@pass_state
def ls(st: State, quiet: bool, fmt: str | None) -> None:
    """List namespaces."""
    nss = st.client().namespaces.list()
    if quiet:
        for ns in nss:
            click.echo(ns.name)
        return
    write_table(["NAME", "LABELS"], [[ns.name, labels_text(ns.labels)] for ns in nss], fmt)


@namespaces.command("create")
@click.argument("name")
@click.argument("labels", nargs=-1)
@pass_state
def create(st: State, name: str, labels: tuple[str, ...]) -> None:
    """Create namespace NAME, with optional KEY=VALUE labels."""
    st.client().namespaces.create(name, parse_assignments(labels))


@namespaces.command("label")
@click.argument("name")
@click.argument("labels", nargs=-1, required=True)
@pass_state
def label(st: State, name: str, labels: tuple[str, ...]) -> None:
    """Set KEY=VALUE labels on a namespace (KEY= removes one)."""
    ns = st.client().namespaces.set_labels(name, parse_assignments(labels))
    click.echo(labels_text(ns.labels))


@namespaces.command("rm")
@click.argument("names", nargs=-1, required=True)
@pass_state
def rm(st: State, names: tuple[str, ...]) -> None:
    """Remove namespaces; one that still holds images, blobs, snapshots or containers is refused."""
    store = st.client().namespaces
    for name in names:
        store.delete(name)
        click.echo(name)
