"""``ctrstore images``, as ``ctr images``, with nerdctl-style shortcuts (``images``, ``rmi``);
``images``/``images ls`` and ``images inspect`` print nerdctl's and docker's fields
(``ctrstore.client.dockercompat``) through ``ctrstore.cli._format``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any

import click

from ctrstore._timeutil import now
from ctrstore.cli._common import State, labels_text, pass_state, printable
from ctrstore.cli._format import Listing, format_option, write_list, write_table
from ctrstore.cli.objects import ObjectKind, complete, inspect_command
from ctrstore.errdefs import CtrstoreError, NotFound
from ctrstore.labels import parse_assignments
from ctrstore.metadata.images import Image


class _ListByDefault(click.Group):
    """``ctrstore images [OPTIONS] [REPOSITORY[:TAG]]`` lists, as ``nerdctl images``: what is
    not a subcommand goes to ``ls``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.resilient_parsing:  # completing: offer the subcommands
            return super().parse_args(ctx, args)
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["ls", *args]
        return super().parse_args(ctx, args)


@click.group("images", cls=_ListByDefault)
def images() -> None:
    """Images: names pointing at manifests or indexes in the content store.

    Pull, push, list, inspect, tag, remove, check, mount, import and export. Removing an
    image leaves its blobs and snapshots to `ctrstore gc`. Without a subcommand, lists
    images (as `nerdctl images` does).
    """


IMAGES = Listing(
    default="table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Platform}}\t{{.Size}}"
    "\t{{.BlobSize}}",
    headers={
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Platform": "PLATFORM",
        "Size": "SIZE",
        "BlobSize": "BLOB SIZE",
        "Name": "NAME",
        "Labels": "LABELS",
    },
    keep=("IMAGE ID", "TAG", "DIGEST"),
)


def _image_rows(st: State, img: Image, trunc: bool) -> list[dict[str, Any]]:
    """nerdctl's ``images`` fields (one object per platform the store holds), keyed as
    nerdctl's ``{{json .}}`` has them; ``Labels`` (the record's) is ctrstore's own."""
    from ctrstore.client.dockercompat import go_time, human_duration, human_size, image_platforms, repo_tag

    repo, tag = repo_tag(img.name)
    digest = img.target.digest
    out = []
    for p in image_platforms(st.client(), img):
        created = img.created_at
        out.append(
            {
                "CreatedAt": go_time(created),
                "CreatedSince": (human_duration(max((now() - created).total_seconds(), 0)) + " ago")
                if created
                else "",
                "Digest": digest,
                "ID": digest.partition(":")[2][:12] if trunc else digest,
                "Repository": repo,
                "Tag": tag,
                "Name": img.name,
                "Size": human_size(p.size),
                "BlobSize": human_size(p.blob_size),
                "Platform": str(p.platform),
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(img.labels.items())),
            }
        )
    return out


@images.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only image IDs.")
@click.option(
    "--all", "-a", "all_", is_flag=True, help="Every image (there are no intermediate ones to hide)."
)
@click.option("--digests", is_flag=True, help="Show the DIGEST column.")
@click.option("--no-trunc", is_flag=True, help="Show whole image IDs.")
@click.option("--names", is_flag=True, help="Show the image name as one NAME column.")
@click.option(
    "--filter",
    "-f",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE], dangling=true|false.",
)
@format_option
@click.argument("refs", nargs=-1, shell_complete=complete("image"))
@pass_state
def ls(
    st: State,
    quiet: bool,
    all_: bool,
    digests: bool,
    no_trunc: bool,
    names: bool,
    filters: tuple[str, ...],
    fmt: str | None,
    refs: tuple[str, ...],
) -> None:
    """List images, newest first, as nerdctl images does (one line per platform held).

    REFS are REPOSITORY[:TAG] patterns (a reference filter each), or containerd filters
    such as 'name~=app' or 'labels."k"==v' (as ctr images ls takes them).

    \b
      ctrstore images --filter dangling=true -q
      ctrstore images --format '{{.Repository}}:{{.Tag}} {{.Size}}'
      ctrstore images --format json | jq -r .ID
    """
    from ctrstore.client.dockercompat import ImageFilter

    client = st.client()
    ctr_filters = [r for r in refs if any(op in r for op in ("==", "!=", "~="))]
    patterns = [f"reference={r}" for r in refs if r not in ctr_filters]
    flt = ImageFilter.parse([*filters, *patterns])
    imgs = flt.apply(client, client.images.list(*ctr_filters))
    imgs.sort(key=lambda i: (i.created_at is not None, i.created_at), reverse=True)
    rows = []
    for img in imgs:
        try:
            rows.extend(_image_rows(st, img, not no_trunc))
        except CtrstoreError as e:
            click.echo(printable(f"ctrstore: warning: image {img.name}: {e}"), err=True)
    columns = IMAGES.default
    if names:
        columns = columns.replace("{{.Repository}}\t{{.Tag}}", "{{.Name}}")
    if digests:
        columns = columns.replace("{{.ID}}", "{{.Digest}}\t{{.ID}}")
    write_list(rows, fmt, replace(IMAGES, default=columns), quiet=quiet, trunc=not no_trunc)


def _inspect_image(st: State, ref: str, size: bool) -> dict[str, Any]:
    from ctrstore.client.dockercompat import find_image, image_inspect

    client = st.client()
    return image_inspect(client, find_image(client, ref))


def _image_names(st: State) -> list[str]:
    return [i.name for i in st.client().images.list()]


IMAGE = ObjectKind("image", inspect=_inspect_image, names=_image_names)
"""Images in ``ctrstore inspect`` and shell completion (see ``ctrstore.cli.objects``)."""

images.add_command(inspect_command("image", help="Show images as docker's JSON (or through --format)."))


@images.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=complete("image"))
@click.option("--gc", "run_gc", is_flag=True, help="Run garbage collection afterwards.")
@pass_state
def rm(st: State, names: tuple[str, ...], run_gc: bool) -> None:
    """Remove images (their blobs and snapshots stay until `ctrstore gc`)."""
    client = st.client()
    for n in names:
        client.images.delete(n)
        click.echo(n)
    if run_gc:
        client.gc()


@images.command("tag")
@click.argument("source", shell_complete=complete("image"))
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
@click.argument("name", shell_complete=complete("image"))
@click.argument("labels", nargs=-1, required=True)
@pass_state
def label(st: State, name: str, labels: tuple[str, ...]) -> None:
    """Set KEY=VALUE labels on an image (KEY= removes one)."""
    click.echo(labels_text(st.client().images.set_labels(name, parse_assignments(labels)).labels))


@images.command("check")
@click.argument("names", nargs=-1, shell_complete=complete("image"))
@format_option
@pass_state
def check(st: State, names: tuple[str, ...], fmt: str | None) -> None:
    """Check that every blob of each image is present and that it is unpacked."""
    client = st.client()
    rows = []
    for n in names or tuple(i.name for i in client.images.list()):
        c = client.check(n)
        status = "complete" if c.complete else f"incomplete ({len(c.missing)} missing)"
        rows.append([n, status, "yes" if c.unpacked else "no"])
    write_table(["REF", "STATUS", "UNPACKED"], rows, fmt)


@images.command("unpack")
@click.argument("name", shell_complete=complete("image"))
@pass_state
def unpack(st: State, name: str) -> None:
    """Unpack a stored image into snapshots."""
    r = st.client().unpack(name)
    click.echo(f"{name}: {len(r.applied)} layers unpacked, {len(r.skipped)} already there; top {r.chain_id}")


@images.command("mount")
@click.argument("name", shell_complete=complete("image"))
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
@click.argument("names", nargs=-1, required=True, shell_complete=complete("image"))
@pass_state
def export(st: State, out: str, names: tuple[str, ...]) -> None:
    """Write images as an OCI image layout tar to OUT (- for stdout).

    Every config and layer must be in the content store (see `images check`); an incomplete
    image fails naming the missing blob. OUT appears only when the archive is whole.
    """
    client = st.client()
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
