"""``--format``: the Go-template subset (``ctrstore.cli._template``) and the output it drives
(``ctrstore.cli._format``: docker's ``table``, ``json`` lines, the tabwriter's columns)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ctrstore.cli._format import Listing, _column_widths, _fit, field_name, write_inspect, write_list
from ctrstore.cli._template import Template, go_str, safe_json
from ctrstore.errdefs import InvalidArgument

OBJ: dict[str, Any] = {
    "Id": "abc123",
    "Name": "/web",
    "State": {"Status": "exited", "Running": False, "Pid": 0, "ExitCode": 3},
    "Config": {
        "Env": ["A=1", "B=2"],
        "Labels": {"com.example.role": "web", "tier": "front"},
        "Cmd": ["sleep", "10"],
        "Entrypoint": None,
    },
    "Mounts": [{"Source": "/srv", "Destination": "/data"}, {"Source": "/tmp", "Destination": "/t"}],
    "Count": 42,
    "Ratio": 1.5,
    "Label": lambda key: {"tier": "front"}.get(key, ""),
}


def render(t: str, data: Any = OBJ) -> str:
    return Template(t).render(data)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Id}} {{.Name}}", "abc123 /web"),
        ("{{.State.Status}}", "exited"),
        ("{{.State.ExitCode}}", "3"),
        ("{{json .State}}", '{"Status":"exited","Running":false,"Pid":0,"ExitCode":3}'),
        ("{{json .Config.Env}}", '["A=1","B=2"]'),
        ("{{json .Config.Entrypoint}}", "null"),
        ('{{index .Config.Labels "com.example.role"}}', "web"),
        ('{{index .Config.Labels "missing"}}', ""),
        ("{{index .Config.Env 1}}", "B=2"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ('{{join .Config.Cmd " "}}', "sleep 10"),
        ("{{upper .State.Status}} {{lower .Name}}", "EXITED /web"),
        ('{{printf "%s=%d" .Id .Count}}', "abc123=42"),
        ('{{printf "%-8s|%5.1f|%q" .Id .Ratio .Name}}', 'abc123  |  1.5|"/web"'),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.Config.Labels}}", "map[com.example.role:web tier:front]"),
        ("{{.Config.Entrypoint}}", "<nil>"),
        ("{{.State.Running}} {{.Ratio}}", "false 1.5"),
        ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/srv:/data /tmp:/t "),
        ("{{range $i, $m := .Mounts}}{{$i}}={{$m.Source}};{{end}}", "0=/srv;1=/tmp;"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}", "com.example.role=web,tier=front,"),
        ("{{range .Config.Entrypoint}}x{{else}}none{{end}}", "none"),
        ("{{if .State.Running}}up{{else if eq .State.ExitCode 3}}three{{else}}other{{end}}", "three"),
        ("{{with .State}}{{.Status}}/{{$.Name}}{{end}}", "exited//web"),
        ("{{$n := .Name}}{{$n}}", "/web"),
        ("{{(index .Mounts 1).Source}}", "/tmp"),
        ("{{.Name | upper | lower}}", "/web"),
        (
            '{{len .Mounts}} {{not .State.Running}} {{and .Id .Name}} {{or .Config.Entrypoint "-"}}',
            "2 true /web -",
        ),
        ('{{.Label "tier"}}|{{.Label "nope"}}', "front|"),
        ("a {{- .Id -}} b {{- /* a comment */ -}} c", "aabc123bc"),
        ('{{"tab\\there"}}', "tab\there"),
        ('{{split .Id "c"}}', "[ab 123]"),
        ("{{truncate .Id 3}} [{{pad .Id 1 1}}]", "abc [ abc123 ]"),
        ("{{title .State.Status}}", "Exited"),
        ("{{json .}}", safe_json({k: v for k, v in OBJ.items() if k != "Label"})),
    ],
)
def test_templates_render_as_go_does(template: str, expected: str) -> None:
    assert render(template) == expected


@pytest.mark.parametrize(
    ("template", "fragments"),
    [
        ("{{.State.Stauts}}", ['.State.Stauts: no field "Stauts" in .State', "ExitCode", "Status"]),
        ("{{.Nope}}", ['.Nope: no field "Nope" in .', "Config", "State"]),
        ("{{.Id.Foo}}", ["can't evaluate field Foo in type string"]),
        ("{{nosuch .Id}}", ['function "nosuch" not defined']),
        ("{{.Id", ["unclosed action"]),
        ("{{if .Id}}x", ["{{if}} without {{end}}"]),
        ("{{end}}", ["unexpected {{end}}"]),
        ('{{template "x"}}', ["not supported"]),
        ("{{$x}}", ['undefined variable "$x"']),
        ("{{index .Config.Env 5}}", ["index out of range: 5"]),
        ("{{range .Id}}{{end}}", ["range can't iterate over abc123"]),
        ("{{.Id 1}}", ["is not a method but has arguments"]),
    ],
)
def test_mistakes_are_one_clear_error(template: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidArgument) as e:
        render(template)
    msg = str(e.value)
    assert msg.startswith("template: "), msg
    for f in fragments:
        assert f in msg, (f, msg)


def test_nothing_in_a_template_runs_python() -> None:
    for t in ("{{__import__}}", "{{.__class__}}", '{{printf "%s" .__dict__}}', "{{.Config.__len__}}"):
        with pytest.raises(InvalidArgument):
            render(t)


def test_data_is_escaped_for_the_terminal_and_json_stays_json() -> None:
    evil = {"Name": "red\x1b[31m\x07bell\nnl\u202erev\x9bcsi\x7fdel", "List": ["a\x1bb"]}
    text = render('{{.Name}} {{.List}} {{printf "%s" .Name}} {{join .List ","}} {{upper .Name}}', evil)
    assert text.isprintable(), repr(text)
    assert "red\\x1b[31m\\x07bell\\nnl\\u202erev\\x9bcsi\\x7fdel" in text
    out = render("{{json .}}", evil)
    assert out.isprintable(), repr(out)
    assert json.loads(out) == evil
    # what the template itself says is not escaped
    assert render('{{.List}}{{"\\n"}}', {"List": []}) == "[]\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "<nil>"), (True, "true"), (0, "0"), (1e6, "1e+06"), (123456789.0, "1.23456789e+08"),
        (2.5, "2.5"), (100000.0, "100000"), ([], "[]"), ({}, "map[]"),
        ({"b": [1, {"c": None}], "a": ""}, "map[a: b:[1 map[c:<nil>]]]"),
    ],
)  # fmt: skip
def test_values_print_as_gos_fmt(value: Any, text: str) -> None:
    assert go_str(value) == text


def test_table_header_names_each_field_as_docker() -> None:
    t = Template(
        "{{.ID}}\t{{.Image}}\t{{json .Labels}}\t{{upper .Names}}\t{{.BlobSize}}\t{{if .X}}{{.X}}{{end}}"
    )
    header = t.render_header({"ID": "CONTAINER ID", "Image": "IMAGE", "Labels": "LABELS", "Names": "NAMES"})
    assert header == "CONTAINER ID\tIMAGE\tLABELS\tNAMES\tBLOB SIZE\tX"


def test_tabwriter_columns_as_docker() -> None:
    """Go's tabwriter with docker's settings (minwidth 10, padding 3): a cell is as wide as
    its column's widest plus 3, at least 10; the last cell of a line is not padded."""
    lines = [["CONTAINER ID", "IMAGE", "NAMES"], ["abc", "busybox:latest", "web"], ["d", "x", "a-long-name"]]
    widths = _column_widths(lines, 10, 3)
    assert widths == [[15, 17], [15, 17], [15, 17]]
    # column blocks: a line with fewer cells breaks the block below it
    assert _column_widths([["a", "b"], ["ccccccc"], ["d", "e"]], 0, 1) == [[2], [], [2]]


def test_fit_cuts_the_widest_column_but_keeps_ids() -> None:
    lines = [["CONTAINER ID", "IMAGE", "COMMAND"], ["0123456789ab", "x" * 40, '"' + "y" * 30 + '"']]
    _fit(lines, 50, 10, 3, keep={0})
    assert lines[1][0] == "0123456789ab"
    assert sum(max(len(r[c]) for r in lines) for c in range(3)) + 6 <= 50
    assert lines[1][1].endswith("…")


LISTING = Listing(default="table {{.ID}}\t{{.Name}}", headers={"ID": "THING ID", "Name": "NAME"})
ROWS = [{"ID": "a1", "Name": "first", "N": 1}, {"ID": "b2", "Name": "second", "N": 2}]


def _lines(fmt: str | None, **kw: Any) -> list[str]:
    out: list[str] = []
    write_list(ROWS, fmt, LISTING, out=out.append, **kw)
    return "\n".join(out).split("\n")


def test_write_list_formats() -> None:
    assert _lines(None) == ["THING ID   NAME", "a1         first", "b2         second"]
    assert _lines("table") == _lines(None)
    assert [json.loads(x) for x in _lines("json")] == ROWS
    assert [json.loads(x) for x in _lines("{{json .}}")] == ROWS
    assert _lines("{{.Name}}={{.N}}") == ["first=1", "second=2"]
    assert _lines("table {{.Name}}\\t{{.N}}") == ["NAME      N", "first     1", "second    2"]  # at least 10
    assert _lines("{{.ID}}\\t{{.N}}") == ["a1\t1", "b2\t2"]  # \t typed as two characters
    assert _lines(None, quiet=True) == ["a1", "b2"]
    assert _lines("{{.Name}}", quiet=True) == ["first", "second"]  # a format wins over -q, as docker


def test_write_inspect() -> None:
    out: list[str] = []
    write_inspect([{"Id": "x", "State": {"Status": "running"}}], None, out=out.append)
    assert json.loads(out[0]) == [{"Id": "x", "State": {"Status": "running"}}]
    assert out[0].startswith('[\n    {\n        "Id": "x"')  # docker's 4-space indent
    out.clear()
    write_inspect([], None, out=out.append)
    assert out == ["[]"]
    out.clear()
    write_inspect([{"Id": "x"}, {"Id": "y"}], "{{.Id}}", out=out.append)
    assert out == ["x", "y"]
    with pytest.raises(InvalidArgument, match="not an inspect format"):
        write_inspect([{"Id": "x"}], "table {{.Id}}", out=out.append)


def test_field_names_of_ctr_columns() -> None:
    assert [field_name(h) for h in ("DIGEST", "CREATED AT", "CONTAINER ID", "BLOB SIZE")] == [
        "Digest",
        "CreatedAt",
        "ContainerID",
        "BlobSize",
    ]
