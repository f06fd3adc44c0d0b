"""``ctrstore volume``, as ``docker volume``/``nerdctl volume``: create, ls, inspect, rm, prune.

Volumes are directories under ``ROOT/io.containerd.volume.v1.local/volumes/<namespace>/``
that containers mount (``run -v NAME:/path``); see ``ctrstore.volumes``. Rows are dicts with
docker's field names (``Driver``, ``Name``, ``Mountpoint``, ``Labels``, ``Links``, ``Size``),
printed as a table.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, pass_state, printable, table
from ctrstore.cli._prune import confirm, docker_size, print_prune
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.labels import parse_assignments

if TYPE_CHECKING:
    from ctrstore.volumes import Volume, VolumeStore


@click.group("volume", cls=AliasGroup)
def volume() -> None:
    """Named volumes: directories containers mount, that outlive them.

    `run -v NAME:/path` creates NAME on first use and fills it from the image's files at
    /path; `run -v /path` (and each path in the image's Volumes) makes an anonymous volume,
    which `rm -v` and `run --rm` remove with the container. Data lives under
    ROOT/io.containerd.volume.v1.local/volumes/NAMESPACE/NAME/_data.
    """


def _row(v: Volume, links: int, size: int | None) -> dict[str, Any]:
    """docker's ``volume ls --format json`` fields."""
    row: dict[str, Any] = {
        "Driver": v.driver,
        "Labels": ",".join(f"{k}={val}" for k, val in sorted(v.labels.items())),
        "Links": links,
        "Mountpoint": str(v.mountpoint),
        "Name": v.name,
        "Scope": "local",
    }
    if size is not None:
        row["Size"] = size
    return row


@volume.command("create")
@click.argument("name", required=False)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label on the volume.")
@click.option("--driver", "-d", default="local", show_default=True, help="Volume driver (only local).")
@click.option(
    "--opt", "-o", "opts", multiple=True, metavar="KEY=VALUE", help="Driver options (none supported)."
)
@pass_state
def create(st: State, name: str | None, labels: tuple[str, ...], driver: str, opts: tuple[str, ...]) -> None:
    """Create a volume (a random 64-hex name without NAME); prints its name."""
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver!r} is not available: only local")
    if opts:
        raise InvalidArgument(f"volume option {opts[0]!r}: the local driver takes no options")
    v = st.client().volumes.create(name, parse_assignments(labels))
    click.echo(printable(v.name))


@volume.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the names.")
@click.option("--size", "-s", is_flag=True, help="Show each volume's size on disk (walks its data).")
@click.option(
    "--filter",
    "-f",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="name=SUBSTRING, label=KEY[=VALUE], dangling=true|false (used by no container), driver=local.",
)
@pass_state
def ls(st: State, quiet: bool, size: bool, filters: tuple[str, ...]) -> None:
    """List volumes."""
    store = st.client().volumes
    users = store.users()
    vols = store.list(*filters)
    if quiet:
        for v in vols:
            click.echo(printable(v.name))
        return
    rows = [_row(v, len(users.get(v.name, ())), store.usage(v.name) if size else None) for v in vols]
    headers = ["DRIVER", "VOLUME NAME"] + (["SIZE"] if size else [])
    table(headers, [[r["Driver"], r["Name"]] + ([docker_size(r["Size"])] if size else []) for r in rows])


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("--size", "-s", is_flag=True, help="Add each volume's size on disk (Size, in bytes).")
@pass_state
def inspect(st: State, names: tuple[str, ...], size: bool) -> None:
    """Show volumes as JSON (docker's fields, plus the containers using each: UsedBy)."""
    store = st.client().volumes
    users = store.users()
    out = []
    for n in names:
        doc = store.get(n).to_json()
        doc["UsedBy"] = users.get(n, [])
        if size:
            doc["Size"] = store.usage(n)
        out.append(doc)
    click.echo(json.dumps(out, indent=2))


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Ignore volumes that do not exist.")
@pass_state
def rm(st: State, names: tuple[str, ...], force: bool) -> None:
    """Remove volumes and their data. A volume a container uses (running or stopped) is
    refused: remove the container first. Every name is checked first; a refusal removes none."""
    store: VolumeStore = st.client().volumes
    wanted = list(names)
    if force:
        wanted = [n for n in names if _exists(store, n)]
    for n in store.remove_many(wanted):
        click.echo(printable(n))


def _exists(store: VolumeStore, name: str) -> bool:
    try:
        store.get(name)
    except NotFound:
        return False
    return True


@volume.command("prune")
@click.option(
    "--all", "-a", "all_", is_flag=True, help="Remove every unused volume, not only anonymous ones."
)
@click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="until=<duration|time> (created before), label=<k>[=<v>], label!=<k>[=<v>].",
)
@pass_state
def prune(st: State, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove volumes no container uses: anonymous ones (--all: named ones too), as docker."""
    from ctrstore.client.housekeeping import prune_volumes

    what = "all local volumes" if all_ else "anonymous local volumes"
    confirm(f"WARNING! This will remove {what} not used by at least one container.", force)
    print_prune(prune_volumes(st.client(), all=all_, filters=filters), "Deleted Volumes")
