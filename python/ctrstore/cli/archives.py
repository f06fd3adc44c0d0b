"""docker's names for moving images as files: ``save`` (``images export``) and ``load``
(``images import``)."""

from __future__ import annotations

import click

from ctrstore.cli._common import State, pass_state, printable
from ctrstore.cli.images import export_to, import_from
from ctrstore.cli.objects import complete


@click.command("save")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file, not stdout.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete("image"))
@pass_state
def save(st: State, output: str | None, names: tuple[str, ...]) -> None:
    """Save images to an OCI image layout tar (stdout unless -o), as `docker save`.

    Refuses to write to a terminal. With -o the file appears only when the archive is whole.
    """
    export_to(st, output or "-", names)


@click.command("load")
@click.option(
    "--input", "-i", "input_", type=click.Path(exists=True, dir_okay=False), help="Read this file, not stdin."
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing.")
@pass_state
def load(st: State, input_: str | None, quiet: bool) -> None:
    """Load images from an OCI image layout tar or a `docker save` archive (stdin unless -i),
    as `docker load`; prints `Loaded image: NAME` for each."""
    for img in import_from(st, input_ or "-"):
        if not quiet:
            click.echo(f"Loaded image: {printable(img.name)}")
