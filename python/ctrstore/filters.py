r"""containerd's filter syntax (``pkg/filters``), used to select images, content, leases, ...

A filter string is a comma separated list of *selectors*, all of which must match (AND);
several filter strings given to :func:`parse` are OR'ed. No filters, or any empty string
among them, matches everything. The grammar, as containerd's scanner really implements it::

    selectors := selector ("," selector)*
    selector  := fieldpath [operator value]      # no operator: the field must be present
    fieldpath := field ("." field)*
    field     := [A-Za-z0-9_]+ | quoted          # ASCII only; "-", "/", ":" need quoting
    operator  := "==" | "!=" | "~="              # a run of = ! ~ is one token: "=" is an error
    value     := quoted | vstart vchar*
    vstart    := any character but space , . = ! ~ / | "
    vchar     := any printable character but space and ,
    quoted    := '"' ... '"'                     # Go string escapes: \\ \" \n \t \x41 \u00e9 \101
               | "/" ... "/" | "|" ... "|"       # the same with \/ or \|; only as a ~= value

Examples: ``name==docker.io/library/redis:7``, ``target.digest==sha256:abc...``,
``labels."containerd.io/gc.root"``, ``name~=^docker\.io/,labels.env!=prod``.

Matching goes through an :class:`Adaptor`, which maps a field path to ``(value, present)``;
``labels.a.b`` reaches the adaptor as ``["labels", "a", "b"]`` and containerd's adaptors join
the tail with "." (see :func:`adapt_labels`), so dotted label keys of plain field characters
need no quoting. ``==`` needs the field present and equal; ``!=`` is true whenever the value
differs, absent fields included (their value is ""); ``~=`` searches the value with the
regular expression (``re.search``, like Go's ``MatchString``), also on absent fields. An
invalid regular expression is not a parse error: like containerd, its selector never matches.

Whitespace is skipped before a token, but the parser only *peeks* at the character after a
field path or a value, so - as in containerd - ``name==foo `` or ``name ,x`` is an error while
``name == foo, labels.x`` is fine. Errors raise :class:`~ctrstore.errdefs.InvalidArgument`
naming the filter and the (character) position, with containerd's wording.
"""

from __future__ import annotations

__all__ = [
    "ALWAYS",
    "Adaptor",
    "AllOf",
    "AnyOf",
    "Filter",
    "FuncAdaptor",
    "Selector",
    "adapt_labels",
    "match_mapping",
    "parse",
]

import json
import re
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from ctrstore.errdefs import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


class Adaptor(Protocol):
    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        """The value at ``fieldpath`` and whether it is present."""
        ...


class Filter(Protocol):
    def match(self, adaptor: Adaptor) -> bool: ...


class FuncAdaptor:
    """An :class:`Adaptor` from a callable ``(fieldpath) -> (value, present)``."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[Sequence[str]], tuple[str, bool]]) -> None:
        self._fn = fn

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        return self._fn(fieldpath)


def adapt_labels(labels: Mapping[str, str], fieldpath: Sequence[str]) -> tuple[str, bool]:
    """Look up ``labels.<key>``: ``fieldpath[0]`` names the map (``labels``, ``annotations``,
    ... - not checked), the rest is joined with "." into the key, as containerd's checkMap."""
    if not fieldpath or not labels:
        return "", False
    key = ".".join(fieldpath[1:])
    return (labels[key], True) if key in labels else ("", False)


def match_mapping(fields: Mapping[str, str], labels: Mapping[str, str]) -> Adaptor:
    """An adaptor over plain fields and ``labels.<key>``. A field path other than labels is
    joined with "." to look up ``fields`` (so ``target.digest`` may be a key); a field is
    present when it is a key. (containerd's own adaptors mostly treat "" as absent: leave
    such fields out to get that.)"""

    def lookup(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        if fieldpath[0] == "labels":
            return adapt_labels(labels, fieldpath)
        key = ".".join(fieldpath)
        return (fields[key], True) if key in fields else ("", False)

    return FuncAdaptor(lookup)


# --- filters ---------------------------------------------------------------------------------

Operator = Literal["?", "==", "!=", "~="]  # "?" is the presence test, as containerd prints it
_OPERATORS: dict[str, Operator] = {"==": "==", "!=": "!=", "~=": "~="}


@dataclass(frozen=True)
class Selector:
    """One ``fieldpath [operator value]`` term."""

    fieldpath: tuple[str, ...]
    operator: Operator = "?"
    value: str = ""
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.operator == "~=":
            try:
                with warnings.catch_warnings():  # e.g. FutureWarning "possible nested set"
                    warnings.simplefilter("ignore")
                    object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as err:  # containerd logs it and never matches
                import logging  # (only here: the logging package costs every command)

                logging.getLogger(__name__).warning("filter regexp %r never matches: %s", self.value, err)

    def match(self, adaptor: Adaptor) -> bool:
        value, present = adaptor.field(self.fieldpath)
        match self.operator:
            case "?":
                return present
            case "==":
                return present and value == self.value
            case "!=":
                return value != self.value
            case "~=":
                return self._regex is not None and self._regex.search(value) is not None


@dataclass(frozen=True)
class AllOf:
    """Matches when every filter matches (the selectors of one filter string)."""

    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return all(f.match(adaptor) for f in self.filters)


@dataclass(frozen=True)
class AnyOf:
    """Matches when some filter matches (several filter strings)."""

    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return any(f.match(adaptor) for f in self.filters)


ALWAYS: Filter = AllOf(())
"""The filter that matches everything."""


def parse(*filters: str) -> Filter:
    """Parse filter strings into one filter that matches if any of them does.

    No filters, or an empty string among them, match everything (containerd's ParseAll).
    Raises InvalidArgument for a malformed filter string.
    """
    parsed = [_Parser(f).parse() if f else ALWAYS for f in filters]
    if not parsed or ALWAYS in parsed:
        return ALWAYS
    return parsed[0] if len(parsed) == 1 else AnyOf(tuple(parsed))


# --- scanner: a port of containerd's scanner.go, positions counted in characters -----------

_EOF, _QUOTED, _VALUE, _FIELD, _SEPARATOR, _OPERATOR, _ILLEGAL, _OTHER = range(8)
_QUOTES = frozenset('/|"')
_OPERATOR_CHARS = frozenset("=!~")
_SIMPLE_ESCAPES = frozenset("abfnrtv\\")
_DIGITS = {"x": 2, "u": 4, "U": 8}
# Go's unicode.IsSpace
_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    map(chr, range(0x2000, 0x200B))
)


def _is_field_char(ch: str) -> bool:
    return ch == "_" or (ch.isascii() and ch.isalnum())


def _is_value_char(ch: str) -> bool:
    # Go: not ',', not space, and graphic (letters, marks, numbers, punctuation, symbols)
    return ch not in ("", ",") and unicodedata.category(ch)[0] in "LMNPS"


def _digit_value(ch: str) -> int:
    return int(ch, 16) if ch and ch in "0123456789abcdefABCDEF" else 16


class _Scanner:
    """Characters come back as 1-char strings, "" at the end, "\\0" (illegal) for NUL."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0  # start of the current character
        self.ppos = 0  # the next character to read
        self.value = False  # an operator was just read: scan a value, not a field
        self.err = ""  # the first error met, kept like containerd's

    def error(self, msg: str) -> None:
        self.err = self.err or msg

    def next(self) -> str:
        if self.ppos >= len(self.text):
            self.pos = len(self.text)
            return ""
        self.pos, ch = self.ppos, self.text[self.ppos]
        self.ppos += 1
        if ch == "\0":
            self.error("unexpected null")
        return ch

    def peek(self) -> str:
        pos, ppos = self.pos, self.ppos
        ch = self.next()
        self.pos, self.ppos = pos, ppos
        return ch

    def scan(self) -> tuple[int, int, str]:
        """The next token as (position, kind, text)."""
        ch = self.next()
        while ch in _SPACES:
            ch = self.next()
        pos = self.pos
        if ch in ("", "\0"):
            return pos, _EOF if ch == "" else _ILLEGAL, ""
        if ch in _QUOTES:
            kind = _QUOTED if self._scan_quoted(ch) else _ILLEGAL
        elif ch in ",.":
            self.value, kind = False, _SEPARATOR
        elif ch in _OPERATOR_CHARS:
            while self.peek() in _OPERATOR_CHARS:
                self.next()
            self.value, kind = True, _OPERATOR
        elif self.value:
            while _is_value_char(self.peek()):
                self.next()
            self.value, kind = False, _VALUE
        elif _is_field_char(ch):
            while _is_field_char(self.peek()):
                self.next()
            kind = _FIELD
        else:
            kind = _OTHER
        return pos, kind, self.text[pos : self.ppos]

    def _scan_quoted(self, quote: str) -> bool:
        legal = True
        ch = self.next()
        while ch != quote:
            if ch in ("\n", "", "\0"):
                self.error("quoted literal not terminated")
                return False
            if ch == "\\":
                ch, ok = self._scan_escape(quote)
                legal = legal and ok
            else:
                ch = self.next()
        return legal

    def _scan_escape(self, quote: str) -> tuple[str, bool]:
        """Check the escape after a backslash; return the character after it."""
        ch = self.next()
        if ch and (ch in _SIMPLE_ESCAPES or ch == quote):
            return self.next(), True
        if ch and ch in "01234567":
            return self._scan_digits(ch, 8, 3)
        if ch and ch in _DIGITS:
            return self._scan_digits(self.next(), 16, _DIGITS[ch])
        self.error("illegal escape sequence")
        return ch, False

    def _scan_digits(self, ch: str, base: int, n: int) -> tuple[str, bool]:
        while n > 0 and _digit_value(ch) < base:
            ch, n = self.next(), n - 1
        if n > 0:
            self.error("illegal numeric escape sequence")
        return ch, n == 0


def _unquote(token: str) -> str:
    """Decode a scanned quoted token (Go's strconv.Unquote, plus / and | as quotes)."""
    quote, body = token[0], token[1:-1]
    pieces: list[str] = []
    raw = bytearray()  # bytes from \x and octal escapes, decoded as UTF-8 when text follows

    def flush() -> None:
        pieces.append(raw.decode("utf-8", "surrogateescape"))
        raw.clear()

    i = 0
    while i < len(body):
        ch, i = body[i], i + 1
        if ch == quote or ch == "\n":
            raise ValueError(ch)
        if ch != "\\":
            flush()
            pieces.append(ch)
            continue
        esc, i = body[i : i + 1], i + 1
        if esc in _SIMPLE_ESCAPES:
            flush()
            pieces.append("\a\b\f\n\r\t\v\\"["abfnrtv\\".index(esc)])
        elif esc in _QUOTES or esc == "'":
            if esc != quote:
                raise ValueError(esc)
            flush()
            pieces.append(esc)
        elif esc in _DIGITS:
            digits, i = body[i : i + _DIGITS[esc]], i + _DIGITS[esc]
            if len(digits) < _DIGITS[esc] or any(_digit_value(d) > 15 for d in digits):
                raise ValueError(digits)
            code = int(digits, 16)
            if esc == "x":
                raw.append(code)
            elif code > 0x10FFFF:
                raise ValueError(digits)
            else:
                flush()
                pieces.append("\ufffd" if 0xD800 <= code < 0xE000 else chr(code))
        elif esc and esc in "01234567":
            digits, i = esc + body[i : i + 2], i + 2
            if len(digits) < 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError(digits)
            raw.append(int(digits, 8))
        else:
            raise ValueError(esc)
    flush()
    return "".join(pieces)


# --- parser: a port of containerd's parser.go ----------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = _Scanner(text)

    def error(self, pos: int, msg: str) -> InvalidArgument:
        quoted = json.dumps(self.text, ensure_ascii=False)
        return InvalidArgument(f"invalid filter {quoted}: {msg} at position {pos}")

    def parse(self) -> Filter:
        selectors = [self.selector()]
        while (ch := self.scanner.peek()) != "":
            if ch != ",":
                raise self.error(self.scanner.ppos, f"unexpected input {ch!r}")
            self.scanner.scan()
            selectors.append(self.selector())
        return AllOf(tuple(selectors))

    def selector(self) -> Selector:
        fieldpath = [self.field()]
        while self.scanner.peek() == ".":
            self.scanner.scan()
            fieldpath.append(self.field())
        if self.scanner.peek() in (",", ""):
            return Selector(tuple(fieldpath))

        pos, kind, text = self.scanner.scan()
        if kind == _ILLEGAL:
            raise self.error(pos, self.scanner.err)
        if kind != _OPERATOR:
            raise self.error(pos, 'expected an operator ("=="|"!="|"~=")')
        if text not in _OPERATORS:
            raise self.error(pos, f"unsupported operator {text!r}")
        op = _OPERATORS[text]

        pos, kind, text = self.scanner.scan()
        if kind in (_VALUE, _FIELD):
            return Selector(tuple(fieldpath), op, text)
        return Selector(tuple(fieldpath), op, self.quoted(pos, kind, text, "value", op == "~="))

    def field(self) -> str:
        pos, kind, text = self.scanner.scan()
        return text if kind == _FIELD else self.quoted(pos, kind, text, "field", False)

    def quoted(self, pos: int, kind: int, text: str, what: str, alt_quotes: bool) -> str:
        """Decode a quoted token, or raise the error for whatever token came instead."""
        if kind == _ILLEGAL:
            raise self.error(pos, self.scanner.err)
        if kind != _QUOTED:
            raise self.error(pos, f"expected {what} or quoted")
        if not alt_quotes and text[0] != '"':
            raise self.error(pos, "invalid quote encountered")
        try:
            return _unquote(text)
        except ValueError:
            raise self.error(pos, "unquoting failed: quote syntax error") from None
