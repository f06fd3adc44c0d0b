"""``ctrstore volume``, as ``docker volume``/``nerdctl volume``: create, ls, inspect, rm, prune.

Volumes are directories under ``ROOT/io.containerd.volume.v1.local/volumes/<namespace>/``
that containers mount (``run -v NAME:/path``); see ``ctrstore.volumes``. ``ls`` rows are
``docker volume ls``'s (``Driver``, ``Name``, ``Mountpoint``, ``Labels``, ``Links``, ``Size``...)
and ``inspect`` objects ``docker volume inspect``'s, printed through ``ctrstore.cli._format``
(``--format``); :data:`VOLUME` plugs volumes into ``ctrstore inspect`` and shell completion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, pass_state, printable
from ctrstore.cli._format import Listing, format_option, write_list
from ctrstore.cli._prune import confirm, docker_size, print_prune, prune_options
from ctrstore.cli.objects import ObjectKind, complete, inspect_command
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


VOLUMES = Listing(
    default="table {{.Driver}}\t{{.Name}}",
    headers={
        "Driver": "DRIVER",
        "Name": "VOLUME NAME",
        "Size": "SIZE",
        "Links": "LINKS",
        "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS",
        "Scope": "SCOPE",
    },
    quiet="{{.Name}}",
)


def _row(v: Volume, links: int, size: int | None) -> dict[str, Any]:
    """``docker volume ls --format json``'s fields, strings as docker prints them (``N/A``
    for what a local volume does not have; ``Size`` only measured with ``--size``)."""
    return {
        "Availability": "N/A",
        "Driver": v.driver,
        "Group": "N/A",
        "Labels": ",".join(f"{k}={val}" for k, val in sorted(v.labels.items())),
        "Links": str(links),
        "Mountpoint": str(v.mountpoint),
        "Name": v.name,
        "Scope": "local",
        "Size": "N/A" if size is None else docker_size(size),
        "Status": "N/A",
    }


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
@format_option
@pass_state
def ls(st: State, quiet: bool, size: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes.

    \b
      ctrstore volume ls --format '{{.Name}} {{.Links}}'
      ctrstore volume ls --format json | jq -r .Mountpoint
    """
    store = st.client().volumes
    users = store.users()
    vols = store.list(*filters)
    measure = size or (fmt is not None and ".Size" in fmt)
    rows = [_row(v, len(users.get(v.name, ())), store.usage(v.name) if measure else None) for v in vols]
    listing = VOLUMES
    if size:
        listing = Listing(VOLUMES.default + "\t{{.Size}}", VOLUMES.headers, VOLUMES.quiet)
    write_list(rows, fmt, listing, quiet=quiet)


def _inspect_volume(st: State, name: str, size: bool) -> dict[str, Any]:
    """``docker volume inspect``'s object, plus the containers using it (``UsedBy``) and,
    with ``size``, its bytes on disk (``Size``)."""
    store = st.client().volumes
    doc = store.get(name).to_json()
    doc["UsedBy"] = store.users().get(name, [])
    if size:
        doc["Size"] = store.usage(name)
    return doc


def _volume_names(st: State) -> list[str]:
    return [v.name for v in st.client().volumes.list()]


VOLUME = ObjectKind("volume", inspect=_inspect_volume, names=_volume_names)
"""Volumes in ``ctrstore inspect`` and shell completion (see ``ctrstore.cli.objects``)."""

volume.add_command(
    inspect_command(
        "volume",
        help="Show volumes as docker's JSON (or through --format), with the containers using "
        "each (UsedBy); --size adds its bytes on disk (Size).",
    )
)


@volume.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=complete("volume"))
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
@prune_options
@pass_state
def prune(st: State, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove volumes no container uses: anonymous ones (--all: named ones too), as docker."""
    from ctrstore.client.housekeeping import prune_volumes

    what = "all local volumes" if all_ else "anonymous local volumes"
    confirm(f"WARNING! This will remove {what} not used by at least one container.", force)
    print_prune(prune_volumes(st.client(), all=all_, filters=filters), "Deleted Volumes")
