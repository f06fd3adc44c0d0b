"""``ctrstore images``, as ``ctr images``, with nerdctl-style shortcuts (``images``, ``rmi``)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import IO

import click

from ctrstore.cli._common import State, human_size, labels_text, pass_state, printable, table
from ctrstore.errdefs import FailedPrecondition, InvalidArgument, NotFound
from ctrstore.images import read_json
from ctrstore.labels import parse_assignments
from ctrstore.metadata.images import Image


@click.group("images", invoke_without_command=True)
@click.pass_context
def images(ctx: click.Context) -> None:
    """Images: names pointing at manifests or indexes in the content store.

    Pull, push, list, inspect, tag, remove, check, mount, import and export. Removing an
    image leaves its blobs and snapshots to `ctrstore gc`. Without a subcommand, lists
    images (as `nerdctl images` does).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(ls)


def new_image_name(name: str) -> str:
    """A name given to an image (``tag``, ``commit``), normalised as ``pull`` names images
    (``app:1`` -> ``docker.io/library/app:1``), so that ``run app:1`` finds it as it finds a
    pulled one. A name that is no reference is left for the image store to reject."""
    from ctrstore.remotes import normalize

    try:
        return normalize(name)
    except InvalidArgument:
        return name


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
    """Show an image's record, manifest and config as JSON (NAME as run takes it: alpine, an
    ID prefix...)."""
    client = st.client()
    img = client.images.lookup(name)
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
@click.option("--force", "-f", is_flag=True, help="Remove every name of an image given by ID.")
@click.option("--gc", "run_gc", is_flag=True, help="Run garbage collection afterwards.")
@pass_state
def rm(st: State, names: tuple[str, ...], force: bool, run_gc: bool) -> None:
    """Remove images (their blobs and snapshots stay until `ctrstore gc`).

    NAME is an image as run takes it: alpine, alpine:3, docker.io/library/alpine:latest,
    name@sha256:..., or an image ID prefix (which removes that one name, or with -f every
    name of the image)."""
    client = st.client()
    for n in names:
        img = client.images.lookup(n)
        doomed = [img.name]
        if (
            img.name != n
            and n.removeprefix("sha256:")
            and img.target.digest.startswith("sha256:" + n.removeprefix("sha256:"))
        ):
            same = [i.name for i in client.images.list() if i.target.digest == img.target.digest]
            if len(same) > 1 and not force:
                raise FailedPrecondition(
                    f"image {n} has {len(same)} names ({', '.join(same)}): "
                    "remove them by name, or use --force to remove them all"
                )
            doomed = same
        for name in doomed:
            client.images.delete(name)
            click.echo(n if doomed == [img.name] else name)
    if run_gc:
        client.gc()


@images.command("tag")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Replace an existing target name.")
@pass_state
def tag(st: State, source: str, targets: tuple[str, ...], force: bool) -> None:
    """Give image SOURCE more names. TARGETs are normalised as pull names images: app:1 is
    docker.io/library/app:1."""
    store = st.client().images
    img = store.lookup(source)
    for t in targets:
        new = Image(new_image_name(t), img.target, dict(img.labels))
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
    image fails naming the missing blob. OUT appears only when the archive is whole.
    """
    client = st.client()
    imgs = [client.images.lookup(n) for n in names]
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
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@pass_state
def import_(st: State, archive: str) -> None:
    """Import an OCI image layout tar or a `docker save` archive."""
    for img in st.client().import_archive(archive):
        click.echo(f"{img.name}  {img.target.digest}")


def _add_transfer_commands() -> None:
    from ctrstore.cli.transfer import pull, push

    images.add_command(pull)
    images.add_command(push)


_add_transfer_commands()
