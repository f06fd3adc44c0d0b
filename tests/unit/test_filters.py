"""ctrstore.filters: containerd's filter syntax (cases ported from pkg/filters/*_test.go)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from ctrstore.errdefs import InvalidArgument
from ctrstore.filters import (
    ALWAYS,
    AllOf,
    AnyOf,
    Filter,
    FuncAdaptor,
    Selector,
    adapt_labels,
    match_mapping,
    parse,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass
class Entry:
    name: str
    other: str = ""
    labels: dict[str, str] = field(default_factory=dict)


# containerd's TestFilters corpus
CORPUS = [
    Entry("foo", labels={"foo": "true"}),
    Entry("bar"),
    Entry("foo", labels={"foo": "present", "more complex label": "present"}),
    Entry("bar", labels={"bar": "true"}),
    Entry("fooer", labels={'more complex label with \\ and "': "present"}),
    Entry("fooer", labels={'more complex label with \\ and ".post': "present"}),
    Entry("baz", other="too complex, yo"),
    Entry("bazo", other="abc"),
    Entry("compound", labels={"foo": "omg_asdf.asdf-qwer"}),
]


def adapt(entry: Entry) -> FuncAdaptor:
    """The adaptor of containerd's test: "" counts as absent, label keys are the joined tail."""

    def lookup(fieldpath: Sequence[str]) -> tuple[str, bool]:
        match fieldpath[0]:
            case "name":
                return entry.name, bool(entry.name)
            case "other":
                return entry.other, bool(entry.other)
            case "labels":
                return adapt_labels(entry.labels, fieldpath)
        return "", False

    return FuncAdaptor(lookup)


def select(flt: Filter) -> list[int]:
    return [i for i, entry in enumerate(CORPUS) if flt.match(adapt(entry))]


ALL = list(range(len(CORPUS)))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("", ALL),
        ("name", ALL),
        ("labels.foo", [0, 2, 8]),
        ("labels.foo,name", [0, 2, 8]),
        ("labels.foo==true", [0]),
        ("labels.foo==omg_asdf.asdf-qwer", [8]),  # punctuated unquoted value
        ("name==bar", [1, 3]),
        ("name!=bar", [0, 2, 4, 5, 6, 7, 8]),
        ("name==bar,labels.bar", [3]),
        ('other=="too complex, yo"', [6]),
        ("other~=[abc]+,name!=foo", [6, 7]),
        ("other~=/[abc]+/,name!=foo", [6, 7]),
        ("other~=/[abc]{1,2}/,name!=foo", [6, 7]),  # the comma inside /.../ is not a separator
        ('other~=/[abc]{0,1}"\\//,name!=foo', []),  # valid syntax, matches nothing
        ("name==bar,labels.bar==true", [3]),
        ("name==bar,labels.bar==wrong", []),
        ('name==foo,labels."more complex label"', [2]),
        ('labels."more complex label with \\\\ and \\""==present', [4]),
        ('labels."more complex label with \\\\ and \\"".post==present', [5]),
        ("  name  ==  bar,  labels.  bar", [3]),  # whitespace before a token is skipped
        ("name~=^ba", [1, 3, 6, 7]),
        ("name~=o$", [0, 2, 7]),
        ("name~=|^f.*r$|", [4, 5]),
    ],
)
def test_containerd_corpus(expr: str, expected: list[int]) -> None:
    assert select(parse(expr)) == expected


def test_several_filters_are_ored() -> None:
    assert select(parse("name==bar", "labels.foo==true")) == [0, 1, 3]
    assert select(parse("name==bar,labels.bar", "name==baz", "other==abc")) == [3, 6, 7]
    assert select(parse("name==nothing", "name==none")) == []


def test_no_filter_or_an_empty_one_matches_everything() -> None:
    assert parse() is ALWAYS
    assert parse("") is ALWAYS
    assert parse("", "") is ALWAYS
    # containerd's ParseAll: "" parses to Always, and anything OR Always is Always
    assert parse("name==nothing", "") is ALWAYS
    assert select(ALWAYS) == ALL


def test_an_error_in_any_filter_raises_even_beside_an_empty_one() -> None:
    with pytest.raises(InvalidArgument, match='invalid filter "name=="'):
        parse("", "name==")


def test_parse_result_structure() -> None:
    assert parse("name==foo") == AllOf((Selector(("name",), "==", "foo"),))
    assert parse("a", "b!=c") == AnyOf((AllOf((Selector(("a",)),)), AllOf((Selector(("b",), "!=", "c"),))))
    sel = Selector(("labels", "x"))
    assert sel.operator == "?"
    assert sel.value == ""


def fieldpaths(expr: str) -> list[tuple[str, ...]]:
    flt = parse(expr)
    assert isinstance(flt, AllOf)
    return [s.fieldpath for s in flt.filters if isinstance(s, Selector)]


def values(expr: str) -> list[str]:
    flt = parse(expr)
    assert isinstance(flt, AllOf)
    return [s.value for s in flt.filters if isinstance(s, Selector)]


@pytest.mark.parametrize(
    ("expr", "paths"),
    [
        ("labels.foo", [("labels", "foo")]),
        ("labels.containerd.io", [("labels", "containerd", "io")]),  # plain fields: no quotes needed
        ('labels."containerd.io/gc.root"', [("labels", "containerd.io/gc.root")]),
        ('labels."containerd.io/gc.ref.content.l".0', [("labels", "containerd.io/gc.ref.content.l", "0")]),
        ('"leading quote".postquote==value', [("leading quote", "postquote")]),
        ("a_B9.0x", [("a_B9", "0x")]),  # fields may start with a digit
        ('labels."a b",labels."\\u00e9"', [("labels", "a b"), ("labels", "é")]),
    ],
)
def test_fieldpaths(expr: str, paths: list[tuple[str, ...]]) -> None:
    assert fieldpaths(expr) == paths


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("name==docker.io/library/redis:7", "docker.io/library/redis:7"),
        ("target.digest==sha256:" + "ab" * 32, "sha256:" + "ab" * 32),
        ("compound.labels==punctuated_value.foo-bar", "punctuated_value.foo-bar"),
        ("name~=^docker.io/", "^docker.io/"),
        ("name~=[abc]\\+", "[abc]\\+"),  # unquoted: backslashes are literal
        ("name~=牛", "牛"),
        ("a==b=c!~d", "b=c!~d"),  # = ! ~ . / | " may follow the first character
        ('a==b"c"', 'b"c"'),
        ("a=='x'", "'x'"),  # single quotes are no quotes
        ("a==x`y`", "x`y`"),
        ('a=="asdf\\n\\tfooo"', "asdf\n\tfooo"),
        ('a=="\\a\\b\\f\\n\\r\\t\\v\\\\\\""', '\a\b\f\n\r\t\v\\"'),
        ('a=="\\x41\\101\\u00e9\\U0001F600"', "AAé😀"),
        ('a=="\\xc3\\xa9"', "é"),  # \x and octal escapes are bytes, decoded as UTF-8
        ('a=="\\377"', "\udcff"),  # ... a lone invalid byte survives as a surrogate escape
        ('a=="\\ud800"', "\ufffd"),  # a surrogate code point becomes U+FFFD, as in Go
        ('a==""', ""),
        ("a~=/foo\\/bar/", "foo/bar"),
        ("a~=|foo/bar|", "foo/bar"),
        ("a~=|a\\|b|", "a|b"),
        ("a~=/docker\\\\.io/", "docker\\.io"),  # a regex backslash inside /.../ is written \\
        ("a~=|牛|", "牛"),
    ],
)
def test_values(expr: str, value: str) -> None:
    assert values(expr) == [value]


def test_unquoted_image_references_and_digests_match() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    img = match_mapping(
        {"name": "docker.io/library/redis:7.2", "target.digest": digest},
        {"containerd.io/gc.root": "2024-01-01", "io.cri-containerd.image": "managed"},
    )
    assert parse("name==docker.io/library/redis:7.2").match(img)
    assert parse(f"target.digest=={digest}").match(img)
    assert parse(f"target.digest=={digest},name~=^docker\\.io/library/").match(img)
    assert parse('labels."containerd.io/gc.root"').match(img)
    assert parse('labels."io.cri-containerd.image"==managed').match(img)
    assert not parse("labels.io.cri==managed").match(img)
    assert not parse("name==docker.io/library/redis:7").match(img)
    assert not parse('labels."containerd.io/gc.root"!=2024-01-01').match(img)


def test_presence_equality_and_absent_fields() -> None:
    entry = match_mapping({"name": "x", "empty": ""}, {"k": "", "a.b": "v"})
    assert parse("name").match(entry)
    assert parse("empty").match(entry)  # a key is present, even with value ""
    assert parse("labels.k").match(entry)
    assert parse("labels.a.b==v").match(entry)
    assert parse('labels."a.b"==v').match(entry)
    assert not parse("missing").match(entry)
    assert not parse("labels.missing").match(entry)
    assert not parse("labels").match(entry)
    # == needs presence; != and ~= do not: an absent field's value is ""
    assert not parse('missing==""').match(entry)
    assert parse('empty==""').match(entry)
    assert parse("missing!=x").match(entry)
    assert not parse('missing!=""').match(entry)
    assert parse("missing~=^$").match(entry)
    assert parse("labels.missing~=|.*|").match(entry)  # unquoted, a value cannot start with "."


def test_regex_uses_search_semantics() -> None:
    entry = match_mapping({"name": "docker.io/library/alpine:3"}, {})
    assert parse("name~=library").match(entry)
    assert parse("name~=^docker").match(entry)
    assert not parse("name~=^library").match(entry)
    assert parse("name~=/alpine:\\\\d$/").match(entry)
    assert parse("name~=alpine:\\d$").match(entry)


def test_invalid_regex_never_matches(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctrstore.filters"):
        flt = parse("name~=[unclosed")
    assert "never matches" in caplog.text
    assert not flt.match(match_mapping({"name": "[unclosed"}, {}))
    assert not parse("name~=[a").match(match_mapping({}, {}))


def test_regex_warnings_do_not_escape() -> None:
    # Python warns (FutureWarning) about "[[", an error under pytest's warnings-as-errors.
    # (Python has no POSIX classes: this is "[[:alph]" then "]", unlike Go's RE2.)
    flt = parse("name~=[[:alpha:]]")
    assert flt.match(match_mapping({"name": "a]"}, {}))


@pytest.mark.parametrize(
    ("expr", "message", "position"),
    [
        # containerd's TestFilters errors (positions are characters)
        ("labels.|foo|==omg_asdf.asdf-qwer", "invalid quote encountered", 7),
        ('labels.?"more complex label with \\\\ and \\"".post==present', "expected field or quoted", 7),
        ("name==foo,", "expected field or quoted", 10),
        ("labels.", "expected field or quoted", 7),
        ("image~=,id?=?fbaq", "expected value or quoted", 7),
        ("labels.ns/key==value", "quoted literal not terminated", 9),
        ("labels.key==/value", "quoted literal not terminated", 12),
        # containerd's TestScanner illegal tokens, through the parser
        ("labels.containerd.io/key==value", "quoted literal not terminated", 20),
        ('labels."containerd.io\nkey"==value', "quoted literal not terminated", 7),
        ('labels."\\g"', "illegal escape sequence", 7),
        ('labels."\\xaz"', "illegal numeric escape sequence", 7),
        ("foo\x00bar", "unexpected null", 3),
        ("doublevalue==value value", "unexpected input ' '", 18),
        # more
        ("labels.==x", "expected field or quoted", 7),
        ("", None, 0),
        ("   ", "expected field or quoted", 3),
        (",name", "expected field or quoted", 0),
        ("name,,x", "expected field or quoted", 5),
        ("name=foo", "unsupported operator '='", 4),
        ("name===foo", "unsupported operator '==='", 4),
        ("name==!foo", "unsupported operator '==!'", 4),
        ("name=~foo", "unsupported operator '=~'", 4),
        ("name==", "expected value or quoted", 6),
        ("name== ", "expected value or quoted", 7),
        ("name==.foo", "expected value or quoted", 6),
        ("name==/foo/", "invalid quote encountered", 6),  # /.../ and |...| only after ~=
        ("name!=|foo|", "invalid quote encountered", 6),
        ("labels.foo-bar", 'expected an operator ("=="|"!="|"~=")', 10),
        ("labels.foo:bar", 'expected an operator ("=="|"!="|"~=")', 10),
        ("labels.牛", "expected field or quoted", 7),
        ("labels'x'", 'expected an operator ("=="|"!="|"~=")', 6),
        ('labels"x"', 'expected an operator ("=="|"!="|"~=")', 6),
        ("labels .foo", 'expected an operator ("=="|"!="|"~=")', 7),
        ("name ", 'expected an operator ("=="|"!="|"~=")', 5),
        ("name ,x", 'expected an operator ("=="|"!="|"~=")', 5),
        ("name==foo ", "unexpected input ' '", 9),
        ("name==foo ,x", "unexpected input ' '", 9),
        ('name=="foo"bar', "unexpected input 'b'", 11),
        ('a=="unterminated', "quoted literal not terminated", 3),
        ('a=="\\400"', "unquoting failed: quote syntax error", 3),  # octal above 255
        ('a=="\\U00110000"', "unquoting failed: quote syntax error", 3),
        ('a=="\\/"', "illegal escape sequence", 3),  # \/ only inside /.../
        ("a~=/\\d/", "illegal escape sequence", 3),  # regex escapes need \\ inside /.../
        ("a~=/x\\|/", "illegal escape sequence", 3),
        ("a~=/é\\x4/", "illegal numeric escape sequence", 3),
        ("name==a,牛==b", "expected field or quoted", 8),
    ],
)
def test_errors(expr: str, message: str | None, position: int) -> None:
    if message is None:
        assert parse(expr) is ALWAYS
        return
    with pytest.raises(InvalidArgument) as info:
        parse(expr)
    quoted = expr.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\x00", "\\u0000")
    assert str(info.value) == f'invalid filter "{quoted}": {message} at position {position}'


def test_error_is_a_value_error_naming_the_bad_filter() -> None:
    with pytest.raises(ValueError, match=r'^invalid filter "labels\.==x": .* at position 7$'):
        parse("name==ok", "labels.==x")


def test_adapt_labels() -> None:
    labels = {"a": "1", "a.b": "2", "containerd.io/gc.root": "3", "": "empty key"}
    assert adapt_labels(labels, ["labels", "a"]) == ("1", True)
    assert adapt_labels(labels, ["labels", "a", "b"]) == ("2", True)
    assert adapt_labels(labels, ("annotations", "a.b")) == ("2", True)  # first segment unchecked
    assert adapt_labels(labels, ["labels", "containerd.io/gc.root"]) == ("3", True)
    assert adapt_labels(labels, ["labels", "b"]) == ("", False)
    assert adapt_labels(labels, ["labels"]) == ("empty key", True)  # key "" as containerd
    assert adapt_labels(labels, []) == ("", False)
    assert adapt_labels({}, ["labels", "a"]) == ("", False)


def test_func_adaptor_and_match_mapping() -> None:
    seen: list[Sequence[str]] = []

    def lookup(fieldpath: Sequence[str]) -> tuple[str, bool]:
        seen.append(fieldpath)
        return "v", fieldpath[0] == "here"

    adaptor = FuncAdaptor(lookup)
    assert parse('here."a.b".c==v').match(adaptor)
    assert tuple(seen[-1]) == ("here", "a.b", "c")
    assert not parse("there==v").match(adaptor)
    assert parse("there!=w").match(adaptor)

    mapping = match_mapping({"id": "x", "runtime.name": "io.containerd.runc.v2"}, {"labels": "no"})
    assert mapping.field(["id"]) == ("x", True)
    assert mapping.field(["runtime", "name"]) == ("io.containerd.runc.v2", True)
    assert mapping.field(["labels"]) == ("", False)
    assert mapping.field([]) == ("", False)
    assert parse("runtime.name~=runc").match(mapping)
