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
from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, labels_text, pass_state, printable
from ctrstore.cli._format import Listing, format_option, write_list, write_table
from ctrstore.cli._prune import confirm, docker_size, print_prune, prune_options
from ctrstore.cli.objects import ObjectKind, complete, inspect_command
from ctrstore.errdefs import CtrstoreError, InvalidArgument, NotFound
from ctrstore.labels import parse_assignments
from ctrstore.metadata.images import Image


class _ListByDefault(AliasGroup):
    """``ctrstore images [OPTIONS] [REPOSITORY[:TAG]]`` lists, as ``nerdctl images``: what is
    not a subcommand goes to ``ls``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.resilient_parsing:  # completing: offer the subcommands
            return super().parse_args(ctx, args)
        if not args or (self.get_command(ctx, args[0]) is None and args[0] not in ("-h", "--help")):
            args = ["ls", *args]
        return super().parse_args(ctx, args)


@click.group("images", cls=_ListByDefault)
def images() -> None:
    """Images: names pointing at manifests or indexes in the content store.

    Pull, push, list, inspect, tag, remove, prune, check, mount, import and export.
    Removing an image (rm, prune) frees the blobs and snapshots only it held at once. Without a
    subcommand, lists images (as `nerdctl images` does).
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


def new_image_name(name: str) -> str:
    """A name given to an image (``tag``, ``commit``), normalised as ``pull`` names images
    (``app:1`` -> ``docker.io/library/app:1``), so that ``run app:1`` finds it as it finds a
    pulled one. A name that is no reference is left for the image store to reject."""
    from ctrstore.remotes import normalize

    try:
        return normalize(name)
    except InvalidArgument:
        return name


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
    from ctrstore.client.dockercompat import image_inspect

    client = st.client()
    return image_inspect(client, client.images.lookup(ref))


def _image_names(st: State) -> list[str]:
    return [i.name for i in st.client().images.list()]


IMAGE = ObjectKind("image", inspect=_inspect_image, names=_image_names)
"""Images in ``ctrstore inspect`` and shell completion (see ``ctrstore.cli.objects``)."""

images.add_command(inspect_command("image", help="Show images as docker's JSON (or through --format)."))


@images.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=complete("image"))
@click.option(
    "--force",
    "-f",
    is_flag=True,
    help="Remove images that containers were made from (they keep their layers), and every name "
    "of an image given by an ID it has several names for.",
)
@click.option(
    "--no-prune", is_flag=True, help="Leave the blobs and snapshots to a later `ctrstore gc` (no gc now)."
)
@click.option("--gc", "run_gc", is_flag=True, hidden=True, help="Accepted for compatibility: gc runs anyway.")
@pass_state
def rm(st: State, names: tuple[str, ...], force: bool, no_prune: bool, run_gc: bool) -> None:
    """Remove images, and free the space they held at once.

    NAME is an image as docker's rmi takes it: a name (busybox is
    docker.io/library/busybox:latest), name@sha256:..., or an image ID (a unique prefix of
    what `images -q` prints), which removes every name of that image (--force when there are
    several). Then garbage collection frees the blobs and unpacked layers that no other
    image, container or lease holds (shared layers stay), and the space freed is printed on
    stderr. An image a container was made from is refused unless --force; every name is
    checked first, so a refusal removes none.
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
@prune_options
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
@click.argument("source", shell_complete=complete("image"))
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
    image fails naming the missing blob. OUT appears only when the archive is whole. A
    terminal is refused as - (redirect stdout, or give a file).
    """
    export_to(st, out, names)


def export_to(st: State, out: str, names: tuple[str, ...]) -> None:
    """Write images ``names`` (as users name them) as one OCI layout tar to ``out``: stdout
    for ``-`` (not a terminal), else a file that appears only when the archive is whole."""
    client = st.client()
    if out == "-":
        refuse_terminal(sys.stdout)
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
