"""``ctrstore snapshots``, as ``ctr snapshots``."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, human_size, labels_text, pass_state, printable
from ctrstore.cli._format import format_option, write_table
from ctrstore.labels import parse_assignments
from ctrstore.mount import mount_command
from ctrstore.snapshots import Info

if TYPE_CHECKING:
    from ctrstore.metadata.snapshots import SnapshotStore


@click.group("snapshots", cls=AliasGroup)
@click.option(
    "--snapshotter",
    "-s",
    metavar="NAME",
    help="overlayfs, native or btrfs (default: the config's snapshotter, overlayfs).",
)
@click.pass_context
def snapshots(ctx: click.Context, snapshotter: str | None) -> None:
    """Snapshots: the file-system trees layers unpack into and containers run on.

    Each layer of an image is a committed snapshot; a container's rootfs is an active one on
    top. Committed snapshots are named, active ones and views have keys; both share one space.
    """
    ctx.meta["snapshotter"] = snapshotter


def _name() -> str | None:
    """The ``--snapshotter`` given to the group (None: the config's)."""
    name: str | None = click.get_current_context().meta.get("snapshotter")
    return name


def _store(st: State) -> SnapshotStore:
    return st.client().snapshotter(_name())


@snapshots.command("ls")
@format_option
@click.argument("filters", nargs=-1)
@pass_state
def ls(st: State, fmt: str | None, filters: tuple[str, ...]) -> None:
    """List snapshots: KEY, PARENT, KIND (filter on name, parent, kind, labels)."""
    rows = [[i.name, i.parent, str(i.kind)] for i in _store(st).walk(*filters)]
    write_table(["KEY", "PARENT", "KIND"], rows, fmt)


@snapshots.command("tree")
@pass_state
def tree(st: State) -> None:
    """Show snapshots as a tree, parents above children."""
    infos = list(_store(st).walk())
    children: dict[str, list[Info]] = defaultdict(list)
    for i in infos:
        children[i.parent].append(i)

    def show(parent: str, depth: int) -> None:
        for i in sorted(children.get(parent, []), key=lambda x: x.name):
            name = printable(i.name)
            click.echo(f"{'  ' * depth}\\_ {name}" if depth else f" {name}")
            show(i.name, depth + 1)

    show("", 0)


@snapshots.command("info")
@click.argument("key")
@pass_state
def info(st: State, key: str) -> None:
    """Show a snapshot's kind, parent, labels and times as JSON."""
    i = _store(st).stat(key)
    click.echo(
        json.dumps(
            {
                "Kind": str(i.kind).capitalize(),
                "Name": i.name,
                "Parent": i.parent,
                "Labels": i.labels,
                "Created": i.created_at.isoformat() if i.created_at else None,
                "Updated": i.updated_at.isoformat() if i.updated_at else None,
            },
            indent=2,
        )
    )


@snapshots.command("prepare")
@click.argument("key")
@click.argument("parent", default="")
@click.option("--target", "-t", metavar="DIR", help="Also print the mount command for DIR.")
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE")
@pass_state
def prepare(st: State, key: str, parent: str, target: str | None, labels: tuple[str, ...]) -> None:
    """Create an active (writable) snapshot KEY on top of committed PARENT."""
    mounts = _store(st).prepare(key, parent, parse_assignments(labels))
    if target:
        click.echo(mount_command(mounts, target))


@snapshots.command("view")
@click.argument("key")
@click.argument("parent")
@click.option("--target", "-t", metavar="DIR", help="Also print the mount command for DIR.")
@pass_state
def view(st: State, key: str, parent: str, target: str | None) -> None:
    """Create a read-only view KEY of committed PARENT."""
    mounts = _store(st).view(key, parent)
    if target:
        click.echo(mount_command(mounts, target))


@snapshots.command("commit")
@click.argument("name")
@click.argument("key")
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE")
@pass_state
def commit(st: State, name: str, key: str, labels: tuple[str, ...]) -> None:
    """Commit active snapshot KEY as NAME (it becomes immutable)."""
    _store(st).commit(name, key, parse_assignments(labels))


@snapshots.command("mounts")
@click.argument("target")
@click.argument("key")
@pass_state
def mounts(st: State, target: str, key: str) -> None:
    """Print the mount command that mounts snapshot KEY at TARGET."""
    click.echo(mount_command(_store(st).mounts(key), target))


@snapshots.command("rm")
@click.argument("keys", nargs=-1, required=True)
@pass_state
def rm(st: State, keys: tuple[str, ...]) -> None:
    """Remove snapshots (one with children is refused)."""
    store = _store(st)
    for k in keys:
        store.remove(k)


@snapshots.command("usage")
@format_option
@click.argument("keys", nargs=-1)
@pass_state
def usage(st: State, fmt: str | None, keys: tuple[str, ...]) -> None:
    """Disk usage of snapshots (all when no KEY is given): KEY, SIZE, INODES."""
    store = _store(st)
    names = keys or tuple(i.name for i in store.walk())
    rows = []
    for k in names:
        u = store.usage(k)
        rows.append([k, human_size(u.size), u.inodes])
    write_table(["KEY", "SIZE", "INODES"], rows, fmt)


@snapshots.command("label")
@click.argument("key")
@click.argument("labels", nargs=-1)
@pass_state
def label(st: State, key: str, labels: tuple[str, ...]) -> None:
    """Set KEY=VALUE labels on a snapshot (KEY= removes one); prints the labels."""
    store = _store(st)
    changes = parse_assignments(labels)
    if changes:
        cur = store.stat(key)
        info = Info(cur.kind, key, cur.parent, changes)
        store.update(info, *(f"labels.{k}" for k in changes))
    click.echo(labels_text(store.stat(key).labels))


@snapshots.command("apply")
@click.argument("key")
@click.argument("layer", type=click.Path(exists=True, dir_okay=False))
@pass_state
def apply(st: State, key: str, layer: str) -> None:
    """Apply the layer file LAYER (tar, tar+gzip or tar+zstd) to active snapshot KEY.

    Prints the layer's diffID (the sha256 of its uncompressed tar) and what was applied.
    """
    stats = st.client().apply_layer(key, layer, snapshotter=_name())
    click.echo(stats.diff_id)
    click.echo(
        f"{stats.entries} entries, {human_size(stats.uncompressed_bytes)} uncompressed "
        f"({stats.compression}, {human_size(stats.compressed_bytes)})",
        err=True,
    )
