"""``ctrstore system df|prune|info``, ``info`` and ``version``, as docker's.

The numbers come from ``ctrstore.client.housekeeping`` and ``ctrstore.client.info``, whose
results carry docker's field names (``to_json``); ``--format`` prints them through
``ctrstore.cli._format`` (json, Go templates), as docker's ``system df``, ``info`` and
``version`` take it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ctrstore.cli._common import State, human_size, pass_state, printable, table
from ctrstore.cli._format import Listing, format_option, object_format_option, write_list, write_object
from ctrstore.cli._prune import confirm, docker_size, prune_options

if TYPE_CHECKING:
    from ctrstore.client.housekeeping import DiskUsage, UsageSummary
    from ctrstore.client.info import SystemInfo, VersionInfo


@click.group("system")
def system() -> None:
    """The store as a whole: disk usage (df), prune, info."""


def _reclaimable(row: UsageSummary) -> str:
    if row.size <= 0:
        return docker_size(row.reclaimable)
    return f"{docker_size(row.reclaimable)} ({row.reclaimable * 100 // row.size}%)"


DF = Listing(
    default="table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    headers={
        "Type": "TYPE",
        "TotalCount": "TOTAL",
        "Active": "ACTIVE",
        "Size": "SIZE",
        "Reclaimable": "RECLAIMABLE",
    },
    quiet="{{.Type}}",
)


def df_row(row: UsageSummary) -> dict[str, Any]:
    """A ``system df`` row as ``docker system df --format '{{json .}}'`` has it: strings, sizes
    as docker prints them (bytes are in ``UsageSummary.to_json``)."""
    return {
        "Active": str(row.active),
        "Reclaimable": _reclaimable(row),
        "Size": docker_size(row.size),
        "TotalCount": str(row.total),
        "Type": row.type,
    }


def print_df(du: DiskUsage, verbose: bool, fmt: str | None = None) -> None:
    """``system df``: docker's table of four rows, or each row through ``fmt``; with
    ``verbose``, a table per kind, or (with ``fmt``) the whole usage as one object
    (``DiskUsage.to_json``: ``Summary``, ``Images``, ``Containers``, ``Volumes``, ``Other``;
    sizes in bytes)."""
    if not verbose:
        write_list([df_row(r) for r in du.rows], fmt, DF)
        return
    if fmt not in (None, "", "table"):
        assert fmt is not None
        write_object(du.to_json(), fmt)
        return
    click.echo("Images space usage:\n")
    table(
        ["REPOSITORY", "TAG", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
        [
            [
                r["Repository"],
                r["Tag"],
                r["ID"].removeprefix("sha256:")[:12],
                docker_size(r["Size"]),
                docker_size(r["SharedSize"]),
                docker_size(r["UniqueSize"]),
                r["Containers"],
            ]
            for r in du.image_rows
        ],
    )
    click.echo("\nContainers space usage:\n")
    table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "STATUS", "NAMES"],
        [
            [
                r["ID"][:12],
                r["Image"],
                json.dumps(r["Command"][:20], ensure_ascii=False),
                r["LocalVolumes"],
                docker_size(r["Size"]),
                r["State"],
                r["Names"],
            ]
            for r in du.container_rows
        ],
    )
    click.echo("\nLocal Volumes space usage:\n")
    table(
        ["VOLUME NAME", "LINKS", "SIZE"],
        [[r["Name"], r["Links"], docker_size(r["Size"])] for r in du.volume_rows],
    )
    click.echo("\nOther data space usage:\n")
    table(["KIND", "COUNT", "SIZE"], [[r["Kind"], r["Count"], docker_size(r["Size"])] for r in du.other_rows])


@system.command("df")
@click.option(
    "--verbose", "-v", is_flag=True, help="Show each image, container, volume and kind of other data."
)
@format_option
@pass_state
def df(st: State, verbose: bool, fmt: str | None) -> None:
    """Show the disk space the store uses: images, containers, volumes, other data.

    \b
    Images         blobs and unpacked layers the namespace's images hold
    Containers     their writable layers (and layers of removed images only they hold)
    Local Volumes  the namespace's volumes
    Other          leases, gc roots, downloads in progress, other namespaces, and garbage

    Each blob, layer and volume is counted once, so the sizes add up to the store's data on
    disk (du). RECLAIMABLE is what `image prune -a`, `container prune`, `volume prune -a` and
    `gc` would give back; ACTIVE counts images with a container, running containers, volumes
    in use, and other data something holds.

    \b
      ctrstore system df --format '{{json .}}'          docker's fields, one row a line
      ctrstore system df -v --format json | jq .Images  every image, sizes in bytes
    """
    from ctrstore.client.housekeeping import disk_usage

    print_df(disk_usage(st.client(), verbose=verbose), verbose, fmt)


@system.command("prune")
@click.option("--all", "-a", "all_", is_flag=True, help="Remove every unused image, not only dangling ones.")
@click.option("--volumes", is_flag=True, help="Remove unused anonymous volumes too.")
@prune_options
@pass_state
def prune(st: State, all_: bool, volumes: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove stopped containers, dangling (--all: unused) images and, with --volumes, unused
    anonymous volumes; then free what they alone held. Prints what went and the space freed."""
    from ctrstore.client.housekeeping import networking_works, system_prune

    items = [
        "all stopped containers",
        *(["all networks not used by at least one container"] if networking_works(st.client()) else []),
        *(["all anonymous volumes not used by at least one container"] if volumes else []),
        "all images without at least one container associated to them" if all_ else "all dangling images",
    ]
    confirm("WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items), force)
    report = system_prune(st.client(), all=all_, volumes=volumes, filters=filters, networks=True)
    for heading, part in (
        ("Deleted Containers", report.containers),
        ("Deleted Networks", report.networks),
        ("Deleted Volumes", report.volumes),
        ("Deleted Images", report.images),
    ):
        if part is not None and part.deleted:
            click.echo(f"{heading}:")
            for n in part.deleted:
                click.echo(printable(n))
            click.echo()
    click.echo(f"Total reclaimed space: {docker_size(report.space_reclaimed)}")


def print_info(info: SystemInfo) -> None:
    d = info.to_json()
    lines = [
        "Client:",
        f" Namespace: {info.namespace}",
        f" Config File: {info.config_file or '-'}",
        "",
        "Server:",
        f" Containers: {d['Containers']}",
        f"  Running: {d['ContainersRunning']}",
        f"  Paused: {d['ContainersPaused']}",
        f"  Stopped: {d['ContainersStopped']}",
        f" Images: {d['Images']}",
        f" Volumes: {d['Volumes']}",
        f" Server Version: {d['ServerVersion']} (no daemon)",
        f" Storage Driver: {d['Driver']}",
        " Logging Driver: json-file",
        f" Cgroup Driver: {d['CgroupDriver']}",
        f" Cgroup Version: {d['CgroupVersion']}",
        " Plugins:",
        f"  Storage: {' '.join(d['Plugins']['Storage']) or '-'}",
        f"  Volume: {' '.join(d['Plugins']['Volume']) or '-'}",
        f"  Network: {' '.join(d['Plugins']['Network']) or '-'}",
        f"  Log: {' '.join(d['Plugins']['Log'])}",
        f" Runtimes: {info.runtime}",
        f" Default Runtime: {info.runtime} ({info.runtime_path or 'not found'}"
        + (f", version {info.runtime_version})" if info.runtime_version else ")"),
        f" Kernel Version: {d['KernelVersion']}",
        f" Operating System: {d['OperatingSystem']}",
        f" OSType: {d['OSType']}",
        f" Architecture: {d['Architecture']}",
        f" CPUs: {d['NCPU']}",
        f" Total Memory: {human_size(d['MemTotal'])}",
        f" Name: {d['Name']}",
        f" Root Dir: {info.root}",
        f" State Dir: {info.state}",
        f" Metadata Schema Version: {info.schema_version}",
        f" Id Mapping: {info.id_mapping}",
        " Plugin Status:",
        *(
            f"  {p['Type']}.{p['ID']}: {p['Status']}" + (f" ({p['Error']})" if p["Error"] else "")
            for p in info.plugins
        ),
    ]
    for line in lines:
        click.echo(printable(line))
    for w in info.warnings:
        click.echo(printable(f"WARNING: {w}"), err=True)


@system.command("info")
@object_format_option
@pass_state
def info(st: State, fmt: str | None) -> None:
    """Show where the store lives, its snapshotter, runtime and plugins, and counts of
    containers, images and volumes (as `docker info`).

    \b
      ctrstore info --format '{{.Driver}} {{.ContainersRunning}}'
      ctrstore info --format json | jq .Plugins
    """
    from ctrstore.client.info import system_info

    i = system_info(st.client())
    if fmt:
        write_object(i.to_json(), fmt)
        return
    print_info(i)


def print_version(v: VersionInfo) -> None:
    lines = [
        "Client:",
        f" Version:          {v.version}",
        f" Rust core:        {v.core_version}",
        f" Python version:   {v.python_version}",
        f" OS/Arch:          {v.os}/{v.arch}",
        "",
        "Server: (no daemon: each command is the server)",
        f" Kernel:           {v.kernel}",
        f" {v.runtime}:",
        f"  Version:         {v.runtime_version or '-'}",
        f"  Path:            {v.runtime_path or 'not found on PATH'}",
    ]
    for line in lines:
        click.echo(printable(line))


@click.command("version")
@object_format_option
@pass_state
def version(st: State, fmt: str | None) -> None:
    """Show the versions of ctrstore, its Rust core and the OCI runtime (as `docker version`).

    \b
      ctrstore version --format '{{.Client.Version}}'
    """
    from ctrstore.client.info import version_info

    v = version_info(st.config())
    if fmt:
        write_object(v.to_json(), fmt)
        return
    print_version(v)
