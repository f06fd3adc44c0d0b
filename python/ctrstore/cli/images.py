"""``ctrstore images``, as ``ctr images``, with nerdctl-style shortcuts (``images``, ``rmi``)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import IO

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, human_size, labels_text, pass_state, printable, table
from ctrstore.cli._prune import confirm, docker_size, print_prune
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.images import read_json
from ctrstore.labels import parse_assignments
from ctrstore.metadata.images import Image


@click.group("images", cls=AliasGroup, invoke_without_command=True)
@click.pass_context
def images(ctx: click.Context) -> None:
    """Images: names pointing at manifests or indexes in the content store.

    Pull, push, list, inspect, tag, remove, prune, check, mount, import and export.
    Removing an image (rm, prune) frees the blobs and snapshots only it held at once. Without a
    subcommand, lists images (as `nerdctl images` does).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(ls)


def _size(st: State, img: Image) -> str:
    try:
        r = st.client().resolve(img)
    except Exception:
        return "-"
    return human_size(r.config.size + sum(layer.size for layer in r.layers))


@images.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the names.")
@click.argument("filters", nargs=-1)
@pass_state
def ls(st: State, quiet: bool, filters: tuple[str, ...]) -> None:
    """List images (filter on name, target.digest, target.mediatype, labels)."""
    imgs = st.client().images.list(*filters)
    if quiet:
        for i in imgs:
            click.echo(printable(i.name))
        return
    table(
        ["REF", "TYPE", "DIGEST", "SIZE", "LABELS"],
        [[i.name, i.target.media_type, i.target.digest, _size(st, i), labels_text(i.labels)] for i in imgs],
    )


@images.command("inspect")
@click.argument("name")
@pass_state
def inspect(st: State, name: str) -> None:
    """Show an image's record, manifest and config as JSON."""
    client = st.client()
    img = client.images.get(name)
    out: dict[str, object] = {
        "Name": img.name,
        "Target": img.target.to_json(),
        "Labels": img.labels,
        "CreatedAt": img.created_at.isoformat() if img.created_at else None,
    }
    try:
        r = client.resolve(img)
        out["Manifest"] = r.doc
        out["Config"] = read_json(client.content, r.config)
    except Exception as e:
        out["Error"] = str(e)
    click.echo(json.dumps(out, indent=2))


@images.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--force",
    "-f",
    is_flag=True,
    help="Remove images that containers were made from (they keep their layers).",
)
@click.option(
    "--no-prune", is_flag=True, help="Leave the blobs and snapshots to a later `ctrstore gc` (no gc now)."
)
@click.option("--gc", "run_gc", is_flag=True, hidden=True, help="Accepted for compatibility: gc runs anyway.")
@pass_state
def rm(st: State, names: tuple[str, ...], force: bool, no_prune: bool, run_gc: bool) -> None:
    """Remove images, and free the space they held at once.

    Each NAME is removed, then garbage collection frees the blobs and unpacked layers that no
    other image, container or lease holds (shared layers stay), and the space freed is
    printed on stderr. An image a container was made from is refused unless --force; every
    name is checked first, so a refusal removes none.
    """
    from ctrstore.client.housekeeping import remove_images

    report = remove_images(st.client(), names, force=force, prune=not no_prune)
    for n in report.untagged:
        click.echo(n)
    if not no_prune:
        click.echo(f"Total reclaimed space: {docker_size(report.space_reclaimed)}", err=True)


@images.command("prune")
@click.option(
    "--all", "-a", "all_", is_flag=True, help="Remove every image no container uses, not only dangling ones."
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
    """Remove unused images and free their space.

    Without --all, only dangling images go (names with a digest and no tag); with --all, every
    image no container of this namespace was made from. Then garbage collection frees what
    they alone held, and the space freed is printed.
    """
    from ctrstore.client.housekeeping import prune_images

    what = "all images without at least one container associated to them" if all_ else "all dangling images"
    confirm(f"WARNING! This will remove {what}.", force)
    print_prune(prune_images(st.client(), all=all_, filters=filters), "Deleted Images")


@images.command("tag")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Replace an existing target name.")
@pass_state
def tag(st: State, source: str, targets: tuple[str, ...], force: bool) -> None:
    """Give image SOURCE more names."""
    store = st.client().images
    img = store.get(source)
    for t in targets:
        new = Image(t, img.target, dict(img.labels))
        if force:
            store.upsert(new)
        else:
            store.create(new)
        click.echo(t)


@images.command("label")
@click.argument("name")
@click.argument("labels", nargs=-1, required=True)
@pass_state
def label(st: State, name: str, labels: tuple[str, ...]) -> None:
    """Set KEY=VALUE labels on an image (KEY= removes one)."""
    click.echo(labels_text(st.client().images.set_labels(name, parse_assignments(labels)).labels))


@images.command("check")
@click.argument("names", nargs=-1)
@pass_state
def check(st: State, names: tuple[str, ...]) -> None:
    """Check that every blob of each image is present and that it is unpacked."""
    client = st.client()
    rows = []
    for n in names or tuple(i.name for i in client.images.list()):
        c = client.check(n)
        status = "complete" if c.complete else f"incomplete ({len(c.missing)} missing)"
        rows.append([n, status, "yes" if c.unpacked else "no"])
    table(["REF", "STATUS", "UNPACKED"], rows)


@images.command("unpack")
@click.argument("name")
@pass_state
def unpack(st: State, name: str) -> None:
    """Unpack a stored image into snapshots."""
    r = st.client().unpack(name)
    click.echo(f"{name}: {len(r.applied)} layers unpacked, {len(r.skipped)} already there; top {r.chain_id}")


@images.command("mount")
@click.argument("name")
@click.argument("target", type=click.Path(file_okay=False))
@pass_state
def mount(st: State, name: str, target: str) -> None:
    """Mount image NAME's root file system read-only at TARGET."""
    click.echo(st.client().mount_image(name, target))


@images.command("unmount")
@click.argument("target", type=click.Path(file_okay=False))
@pass_state
def unmount(st: State, target: str) -> None:
    """Unmount an image mounted with `images mount` and drop its view."""
    st.client().unmount_image(target)
    click.echo(target)


@images.command("export")
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("names", nargs=-1, required=True)
@pass_state
def export(st: State, out: str, names: tuple[str, ...]) -> None:
    """Write images as an OCI image layout tar to OUT (- for stdout).

    Every config and layer must be in the content store (see `images check`); an incomplete
    image fails naming the missing blob. OUT appears only when the archive is whole. A
    terminal is refused as - (redirect stdout, or give a file).
    """
    client = st.client()
    if out == "-":
        refuse_terminal(sys.stdout)
    imgs = [client.images.get(n) for n in names]
    if out == "-":
        client.export_archive(imgs, sys.stdout.buffer)
        return
    _write_whole(out, lambda f: client.export_archive(imgs, f))


def _write_whole(out: str, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file through a temporary one beside it, renamed over ``out`` only on success,
    so a failed export leaves no partial archive (nor a clobbered old one). Devices and pipes
    (``/dev/null``, ``>(...)``) are written directly."""
    path = os.path.realpath(out)
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, "wb") as f:
            write(f)
        return
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise NotFound(f"cannot write {out}: directory {parent} does not exist")
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@images.command("import")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@pass_state
def import_(st: State, archive: str) -> None:
    """Import an OCI image layout tar or a `docker save` archive (- reads it from stdin)."""
    for img in import_from(st, archive):
        click.echo(f"{img.name}  {img.target.digest}")


def refuse_terminal(stream: IO[str]) -> None:
    """An archive is not for a terminal (docker: "cowardly refusing to save to a terminal")."""
    if stream.isatty():
        raise InvalidArgument(
            "refusing to write an image archive to a terminal: redirect stdout (> file.tar) or give a file"
        )


def import_from(st: State, archive: str) -> list[Image]:
    """Import ``archive``, or stdin for ``-`` (which must not be a terminal): a regular file
    on stdin is read in place, a pipe is spooled into a temporary file under the store's root
    first (the archive is read out of order)."""
    client = st.client()
    if archive != "-":
        return client.import_archive(archive)
    if sys.stdin.isatty():
        raise InvalidArgument(
            "refusing to read an image archive from a terminal: redirect stdin (< file.tar)"
        )
    return client.import_stream(sys.stdin.buffer)


def _add_transfer_commands() -> None:
    from ctrstore.cli.transfer import pull, push

    images.add_command(pull)
    images.add_command(push)


_add_transfer_commands()
