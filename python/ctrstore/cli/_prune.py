"""What the prune commands share: docker's options (``--force``, ``--filter``), confirmation
prompt, sizes and report."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ctrstore.cli._common import printable
from ctrstore.errdefs import Aborted

if TYPE_CHECKING:
    from ctrstore.client.housekeeping import PruneReport

__all__ = ["confirm", "docker_size", "print_prune", "prune_options"]


F = TypeVar("F", bound=Callable[..., Any])


def prune_options(f: F) -> F:
    """``--force``/``-f`` and docker's ``--filter`` (passed as ``force`` and ``filters``), as
    every prune command takes them."""
    f = click.option(
        "--filter",
        "filters",
        multiple=True,
        metavar="KEY=VALUE",
        help="until=<duration|time> (created before), label=<k>[=<v>], label!=<k>[=<v>].",
    )(f)
    return click.option("--force", "-f", is_flag=True, help="Do not ask for confirmation.")(f)


def docker_size(n: int) -> str:
    """A size as docker prints it (``units.HumanSize``: decimal units, 3 significant
    digits): ``0B``, ``512B``, ``16.4kB``, ``3.1MB``, ``1.23GB``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.3g}{unit}"
        size /= 1000
    raise AssertionError("unreachable")


def confirm(warning: str, force: bool) -> None:
    """Ask ``Are you sure you want to continue? [y/N]`` after ``warning`` (on stderr), unless
    ``force``; anything but y/yes aborts (exit status 1, nothing removed)."""
    if force:
        return
    click.echo(f"{warning}\nAre you sure you want to continue? [y/N] ", err=True, nl=False)
    answer = sys.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        if not answer.endswith("\n"):
            click.echo(err=True)
        raise Aborted("not confirmed: nothing removed (--force removes without asking)")


def print_prune(report: PruneReport, heading: str) -> None:
    """docker's prune output: the heading and what went, then the space reclaimed."""
    if report.deleted:
        click.echo(f"{heading}:")
        for name in report.deleted:
            click.echo(printable(name))
        click.echo()
    click.echo(f"Total reclaimed space: {docker_size(report.space_reclaimed)}")
