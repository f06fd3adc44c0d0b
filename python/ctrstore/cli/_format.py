"""How every listing and inspect command prints: ``--format``, tables, terminal colour.

One mechanism for every command (``ps``, ``images``, ``inspect``, and the ``ls`` of every
noun), so that scripts written against docker's and nerdctl's output work unchanged:

``--format table`` (the default)
    aligned columns as docker's ``tabwriter`` makes them;
``--format json``
    one JSON object per line for a listing (as nerdctl and docker), the JSON list for inspect;
``--format 'table {{.ID}}\\t{{.Image}}'``
    a table of the template's columns, headed by the fields' column names;
``--format '{{.ID}} {{.Image}}'``
    the template (:mod:`ctrstore.cli._template`, Go's ``text/template`` subset) per object.

In a listing's format ``\\t`` and ``\\n`` typed as two characters are a tab and a newline,
as docker has them. On a terminal, column headers are bold and a status is coloured (green
while up, red for a failure), and a default table is cut to the terminal's width (``…``
marks a cut cell, ``--no-trunc`` keeps everything); on a pipe, or with ``NO_COLOR`` set,
the text is plain and whole.

Using it in a command (one you add, too)
----------------------------------------
A listing builds one dict per object, keyed by docker's field names (values as docker
prints them, mostly strings; a function value is a method, ``{{.Label "k"}}``), and hands
them to :func:`write_list` with a :class:`Listing` that says its default table and column
names::

    NETWORKS = Listing(
        default="table {{.ID}}\\t{{.Name}}\\t{{.Driver}}",
        headers={"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER"},
    )

    @network.command("ls")
    @format_option
    @click.option("--quiet", "-q", is_flag=True)
    @pass_state
    def ls(st: State, fmt: str | None, quiet: bool) -> None:
        write_list([{"ID": n.id[:12], "Name": n.name, ...} for n in ...], fmt, NETWORKS, quiet=quiet)

An inspect command builds docker's object (a dict) for each name and calls
:func:`write_inspect`; to plug a kind of object into the top-level ``ctrstore inspect``
(``--type``) and shell completion, see :mod:`ctrstore.cli._objects`. A plain ``ctr``-style
table with ``--format`` support is :func:`write_table` (fields named after the headers:
``DIGEST`` is ``.Digest``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import click

from ctrstore.cli._common import printable
from ctrstore.errdefs import InvalidArgument

__all__ = [
    "Listing",
    "colour_enabled",
    "field_name",
    "format_option",
    "inspect_format_option",
    "write_inspect",
    "write_list",
    "write_object",
    "write_table",
]

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_HELP = (
    "Output format: 'table' (the default), 'json' (one JSON object per line), "
    "'table TEMPLATE' or a Go template such as '{{.ID}}\\t{{json .Labels}}'."
)
INSPECT_FORMAT_HELP = (
    "Print each object through a Go template, e.g. '{{.State.Status}}' or '{{json .Config}}' "
    "(default: a JSON list, as docker inspect)."
)


OBJECT_FORMAT_HELP = (
    "Print as JSON ('json', one line) or through a Go template, e.g. '{{.ServerVersion}}' or "
    "'{{json .Client}}' (default: text)."
)


def format_option(f: F) -> F:
    """``--format FORMAT`` for a listing (passed as ``fmt``)."""
    return click.option("--format", "fmt", metavar="FORMAT", help=FORMAT_HELP)(f)


def object_format_option(f: F) -> F:
    """``-f``/``--format`` for a command that shows one object (``info``, ``version``), passed
    as ``fmt``."""
    return click.option("--format", "-f", "fmt", metavar="FORMAT", help=OBJECT_FORMAT_HELP)(f)


def inspect_format_option(f: F) -> F:
    """``-f``/``--format TEMPLATE`` for an inspect command (passed as ``fmt``)."""
    return click.option("--format", "-f", "fmt", metavar="TEMPLATE", help=INSPECT_FORMAT_HELP)(f)


# -- terminal -------------------------------------------------------------------------------------
def colour_enabled(stream: IO[str] | None = None) -> bool:
    """Colour only for a terminal, and never with ``NO_COLOR`` set (https://no-color.org)
    or ``TERM=dumb``."""
    s = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return s.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_width(stream: IO[str] | None = None) -> int | None:
    s = stream or sys.stdout
    try:
        if not s.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size((0, 0)).columns or None


_BOLD = "1"
_GREEN = "32"
_RED = "31"
_YELLOW = "33"
_DIM = "2"


def status_colour(text: str) -> str | None:
    """The colour of a container's STATUS or STATE cell: green while up, dim after a clean
    exit, red after a failed one (or dead), yellow when created or paused."""
    t = text.lower()
    if t.startswith(("up", "running")):
        return _GREEN
    if t.startswith("exited (0)") or t == "exited":
        return _DIM
    if t.startswith("exited") or t == "dead":
        return _RED
    if t.startswith(("created", "paused", "restarting")):
        return _YELLOW
    return None


_COLOURED_COLUMNS: dict[str, Callable[[str], str | None]] = {"STATUS": status_colour, "STATE": status_colour}


def _sgr(code: str | None, text: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if code and text else text


# -- tables ---------------------------------------------------------------------------------------
def _column_widths(lines: Sequence[Sequence[str]], minwidth: int, padding: int) -> list[list[int]]:
    """Go's ``text/tabwriter``: cell j of a line (one that ends in a tab, i.e. not the last)
    is as wide as the widest cell j of its *column block* — the run of adjacent lines that
    have a cell j — plus ``padding``, and at least ``minwidth``."""
    widths = [[0] * (len(cells) - 1) for cells in lines]

    def fmt(col: int, start: int, end: int) -> None:
        i = start
        while i < end:
            if col >= len(lines[i]) - 1:
                i += 1
                continue
            j = i
            width = minwidth
            while j < end and col < len(lines[j]) - 1:
                width = max(width, len(lines[j][col]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][col] = width
            fmt(col + 1, i, j)
            i = j

    fmt(0, 0, len(lines))
    return widths


def _fit(lines: list[list[str]], total: int, minwidth: int, padding: int, keep: set[int]) -> None:
    """Cut the widest cells (``…``) until every line fits ``total`` columns (as laid out by
    :func:`_column_widths`), leaving the columns in ``keep`` whole and none narrower than its
    header (or 4 characters)."""
    if not lines or len({len(c) for c in lines}) != 1:
        return
    ncol = len(lines[0])
    header = lines[0]
    for _ in range(1000):
        widths = [max(len(r[c]) for r in lines) for c in range(ncol)]
        need = sum(max(w + padding, minwidth) for w in widths[:-1]) + widths[-1]
        if need <= total:
            return
        cands = [c for c in range(ncol) if c not in keep and widths[c] > max(len(header[c]), 4)]
        if not cands:
            return
        c = max(cands, key=lambda i: widths[i])
        target = max(widths[c] - max(need - total, 1), len(header[c]), 4)
        for r in lines[1:]:
            if len(r[c]) > target:
                r[c] = r[c][: target - 1] + "…"


def _write_cells(
    lines: list[list[str]],
    *,
    minwidth: int,
    padding: int,
    header: bool,
    out: Callable[[str], None],
    fit: bool,
    keep: Iterable[str] = (),
) -> None:
    colour = colour_enabled()
    heads = lines[0] if header and lines else []
    codes: list[list[str | None]] = []
    for n, cells in enumerate(lines):  # decided on whole cells, before any is cut
        row: list[str | None] = []
        for i, cell in enumerate(cells):
            code: str | None = None
            if colour:
                if header and n == 0:
                    code = _BOLD
                elif i < len(heads) and (pick := _COLOURED_COLUMNS.get(heads[i])) is not None:
                    code = pick(cell)
            row.append(code)
        codes.append(row)
    if fit and (width := _terminal_width()) is not None:
        _fit(lines, width, minwidth, padding, {i for i, h in enumerate(heads) if h in set(keep)})
    widths = _column_widths(lines, minwidth, padding)
    for cells, ws, cs in zip(lines, widths, codes, strict=True):
        parts = []
        for i, cell in enumerate(cells):
            pad = " " * (ws[i] - len(cell)) if i < len(ws) else ""
            parts.append(_sgr(cs[i], cell) + pad)
        out("".join(parts))


def _lines_of(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.split("\n")]


@dataclass(frozen=True)
class Listing:
    """A listing's default output and column names."""

    default: str
    """Its default table, a docker-style ``table {{.A}}\\t{{.B}}`` template."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Field -> column name (a field not named here is headed by its name in capitals,
    ``BlobSize`` as ``BLOB SIZE``)."""
    quiet: str = "{{.ID}}"
    """What ``-q`` prints per object."""
    keep: tuple[str, ...] = ("CONTAINER ID", "IMAGE ID", "ID", "NETWORK ID", "VOLUME NAME")
    """Columns never cut to fit a terminal."""


def _list_template(fmt: str) -> tuple[str, bool]:
    """docker's ``Format.templateString``: the template and whether it is a table."""
    if fmt == "json":
        return "{{json .}}", False
    table = fmt.startswith("table")
    out = fmt[len("table") :] if table else fmt
    out = out.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return out, table


def write_list(
    rows: Iterable[Mapping[str, Any]],
    fmt: str | None,
    listing: Listing,
    *,
    quiet: bool = False,
    trunc: bool = True,
    out: Callable[[str], None] = click.echo,
) -> None:
    """Print a listing. ``fmt``: the ``--format`` value (None: the default table);
    ``quiet``: only ``listing.quiet`` per object (with a custom format, the format wins, as
    in docker); ``trunc``: cut a default table to the terminal's width."""
    custom = fmt not in (None, "", "table")
    if not custom and quiet:
        source, table = listing.quiet, False
    elif not custom:
        source, table = _list_template(listing.default)
    else:
        assert fmt is not None
        source, table = _list_template(fmt)
    from ctrstore.cli._template import Template  # (only when a listing is printed)

    tmpl = Template(source)
    if not table:
        for row in rows:
            out(tmpl.render(row))
        return
    text_rows = [tmpl.render(row) for row in rows]
    header = tmpl.render_header(listing.headers)
    lines = _lines_of(header)
    for r in text_rows:
        lines.extend(_lines_of(r))
    _write_cells(
        lines,
        minwidth=10,
        padding=3,
        header=True,
        out=out,
        fit=trunc and not custom,
        keep=listing.keep,
    )


def field_name(header: str) -> str:
    """The field a ``ctr``-style column is reached by in a template: ``DIGEST`` -> ``Digest``,
    ``CONTAINER ID`` -> ``ContainerID``, ``IMAGE REF`` -> ``ImageRef``."""
    return "".join(w if w == "ID" else w.capitalize() for w in header.replace("-", " ").split())


def write_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    fmt: str | None = None,
    *,
    fields: Sequence[str] | None = None,
) -> None:
    """A ``ctr``-style table (two spaces between columns, as :func:`ctrstore.cli._common.table`
    prints it) that also takes ``--format``: each row is then an object whose fields are
    named after the headers (:func:`field_name`) or by ``fields``."""
    names = list(fields) if fields is not None else [field_name(h) for h in headers]
    if fmt not in (None, "", "table"):
        assert fmt is not None
        listing = Listing(
            default="table " + "\t".join("{{." + n + "}}" for n in names),
            headers=dict(zip(names, headers, strict=True)),
            quiet="{{." + names[0] + "}}",
        )
        write_list([_row(names, r) for r in rows], fmt, listing)
        return
    data = [[printable(c) for c in headers], *([printable(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in data) for i in range(len(headers))]
    colour = colour_enabled()
    for n, r in enumerate(data):
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        click.echo(_sgr(_BOLD, line) if colour and n == 0 else line)


def _row(names: Sequence[str], cells: Sequence[object]) -> dict[str, Any]:
    return {
        n: c if isinstance(c, str | int | float | bool) or c is None else str(c)
        for n, c in zip(names, cells, strict=True)
    }


# -- inspect --------------------------------------------------------------------------------------
def write_inspect(
    objects: Sequence[Mapping[str, Any]], fmt: str | None, *, out: Callable[[str], None] = click.echo
) -> None:
    """Print inspected objects: docker's JSON list (4-space indent) or, with a template, one
    rendering per object."""
    if fmt in (None, "", "json"):
        from ctrstore.cli._template import safe_json

        out(safe_json(list(objects), indent=4) if objects else "[]")
        return
    assert fmt is not None
    if fmt.startswith("table"):
        raise InvalidArgument("--format: a table is not an inspect format (give a template or json)")
    from ctrstore.cli._template import Template

    tmpl = Template(fmt)
    for obj in objects:
        out(tmpl.render(obj))


def write_object(obj: Mapping[str, Any], fmt: str, *, out: Callable[[str], None] = click.echo) -> None:
    """Print one object (``docker info``, ``docker version``, ``system df -v``) through
    ``--format``: ``json`` is ``{{json .}}`` (one line, as docker's), anything else a Go
    template."""
    if fmt.startswith("table"):
        raise InvalidArgument("--format: a table is not a format for this command (give json or a template)")
    from ctrstore.cli._template import Template

    out(Template("{{json .}}" if fmt == "json" else fmt).render(obj))
