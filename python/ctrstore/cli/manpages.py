"""Man pages for every command, generated from the CLI itself (its help texts and options), so
they never drift from ``--help``::

    python -m ctrstore.cli.manpages man/man1      # ctrstore.1, ctrstore-images.1, ctrstore-images-ls.1...

``scripts/setup`` writes them into ``man/man1`` of the checkout (``man -l man/man1/ctrstore-ps.1``,
or ``MANPATH=$PWD/man man ctrstore-ps``); ``scripts/build-wheel`` into the wheel's
``share/man/man1``. One page per command and subcommand; a second name of a command
(``image`` for ``images``, ``ns`` for ``namespaces``) is a ``.so`` link to its page.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click

from ctrstore import __version__

__all__ = ["main", "pages", "render"]

_ALIASES_FIRST = ("images", "containers", "namespaces", "plugin", "snapshots")
"""Of two top-level names for one command, the one whose page is the page."""


def _esc(text: str) -> str:
    """Text for roff: backslashes and hyphens escaped, no line starting with a control
    character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _paragraphs(help_text: str) -> Iterator[tuple[bool, str]]:
    """``(verbatim, text)`` blocks of a click help text: a ``\\b`` block keeps its lines."""
    text = inspect.cleandoc(help_text).replace("\r", "")
    for block in re.split(r"\n\s*\n", text.strip()):
        if block.startswith("\b"):
            yield True, "\n".join(line for line in block[1:].split("\n") if line.strip() or line == "")
        else:
            yield False, " ".join(line.strip() for line in block.split("\n"))


def _help_body(help_text: str) -> list[str]:
    out: list[str] = []
    for verbatim, block in _paragraphs(help_text):
        if not block.strip():
            continue
        if verbatim:
            lines = [line for line in block.split("\n") if line.strip()]
            indent = min(len(line) - len(line.lstrip()) for line in lines)
            out += [".PP", ".RS 4", ".nf", *(_esc(line[indent:]) for line in lines), ".fi", ".RE"]
        else:
            out += [".PP", _esc(block)]
    return out


def _synopsis(cmd: click.Command, ctx: click.Context) -> str:
    return " ".join(cmd.collect_usage_pieces(ctx))


def _option_lines(cmd: click.Command, ctx: click.Context) -> list[str]:
    out: list[str] = []
    for p in cmd.get_params(ctx):
        record = p.get_help_record(ctx)
        if record is None:
            continue
        names, help_ = record
        out += [".TP", f"\\fB{_esc(names)}\\fR", _esc(help_ or "")]
    return out


def render(cmd: click.Command, path: list[str], ctx: click.Context, *, date: str) -> str:
    """One command's page."""
    name = "-".join(path)
    title = name.upper()
    short = cmd.get_short_help_str(limit=200).removeprefix("ctrstore: ")
    lines = [
        f'.TH "{_esc(title)}" "1" "{date}" "ctrstore {__version__}" "ctrstore Manual"',
        ".SH NAME",
        f"{_esc(name)} \\- {_esc(short)}",
        ".SH SYNOPSIS",
        f"\\fB{_esc(' '.join(path))}\\fR {_esc(_synopsis(cmd, ctx))}",
        ".SH DESCRIPTION",
        *_help_body(cmd.help or short or ""),
    ]
    options = _option_lines(cmd, ctx)
    if options:
        lines += [".SH OPTIONS", *options]
    see = [f"\\fB{_esc(name)}\\-{_esc(sub)}\\fR(1)" for sub in _subcommands(cmd, ctx)]
    if isinstance(cmd, click.Group):
        lines += [".SH COMMANDS"]
        for sub in _subcommands(cmd, ctx):
            sc = cmd.get_command(ctx, sub)
            assert sc is not None
            lines += [".TP", f"\\fB{_esc(sub)}\\fR", _esc(sc.get_short_help_str(limit=200))]
    if len(path) > 1:
        see.insert(0, f"\\fB{_esc('-'.join(path[:-1]))}\\fR(1)")
    if see:
        lines += [".SH SEE ALSO", ", ".join(see)]
    return "\n".join(lines) + "\n"


def _subcommands(cmd: click.Command, ctx: click.Context) -> list[str]:
    return cmd.list_commands(ctx) if isinstance(cmd, click.Group) else []


def pages(root: click.Group, *, date: str) -> dict[str, str]:
    """File name -> page, for ``root`` and every command below it. A command reached by
    several names has one page, under the first name met (top-level commands before those
    inside groups, ``images`` before ``image``); its other names are ``.so`` links to it."""
    out: dict[str, str] = {}
    first: dict[int, str] = {}

    def walk(cmd: click.Command, path: list[str], parent: click.Context) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        file = "-".join(path) + ".1"
        if id(cmd) in first:  # another name: a link (and links for its subcommands)
            out[file] = f".so man1/{first[id(cmd)]}\n"
        else:
            first[id(cmd)] = file
            out[file] = render(cmd, path, ctx, date=date)
        for sub in _subcommands(cmd, ctx):
            assert isinstance(cmd, click.Group)
            sc = cmd.get_command(ctx, sub)
            if sc is not None:
                walk(sc, [*path, sub], ctx)

    rctx = click.Context(root, info_name="ctrstore")
    out["ctrstore.1"] = render(root, ["ctrstore"], rctx, date=date)
    top = {n: root.get_command(rctx, n) for n in root.list_commands(rctx)}
    order = sorted(
        (n for n, c in top.items() if c is not None),
        key=lambda n: (isinstance(top[n], click.Group), n not in _ALIASES_FIRST, n),
    )
    for n in order:
        c = top[n]
        assert c is not None
        walk(c, ["ctrstore", n], rctx)
    return out


def _date() -> str:
    """The build's date (``SOURCE_DATE_EPOCH`` for a reproducible build)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    return time.strftime("%Y-%m-%d", t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctrstore.cli.manpages", description=__doc__.split("\n")[0])
    ap.add_argument("outdir", help="directory to write the NAME.1 pages into (made if missing)")
    args = ap.parse_args(argv)
    from ctrstore.cli import cli

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    generated = pages(cli, date=_date())
    for old in out.glob("ctrstore*.1"):
        if old.name not in generated:
            old.unlink()
    for name, text in generated.items():
        (out / name).write_text(text)
    print(f"{len(generated)} man pages in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
