"""A safe evaluator for the subset of Go's ``text/template`` that docker and nerdctl users put
in ``--format``: ``'{{.ID}} {{.Image}}'``, ``'{{json .Config}}'``, ``'{{.State.Status}}'``,
``'{{range .Mounts}}{{.Source}} {{end}}'``, ``'{{index .Config.Labels "k"}}'``.

Nothing in a template is run as Python: the text is parsed into a small tree (text, actions,
``if``/``else``/``range``/``with``/``end``, variables) and walked over plain data (dicts,
lists, strings, numbers, booleans, None). Supported, as Go and docker's ``templates``
package have them:

- field chains ``.A.B``, ``.`` and ``$`` (the whole object), variables (``$v := ...``,
  ``range $i, $v := ...``), ``(pipeline).Field``, pipelines ``a | b``, ``{{-``/``-}}``
  trimming and ``{{/* comments */}}``;
- docker's functions ``json``, ``join``, ``split``, ``upper``, ``lower``, ``title``, ``pad``,
  ``truncate``, and Go's ``index``, ``len``, ``printf``, ``print``, ``println``, ``eq``,
  ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``not``, ``and``, ``or``, ``slice``;
- a field whose value is a function is called, with arguments: ``{{.Label "com.example"}}``
  (docker's ``ps`` and ``images`` have such methods).

Values print as Go prints them (``[a b]`` for a list, ``map[k:v]`` for a map, ``<nil>``,
``true``). A field that does not exist is an error naming it and the fields there are
(``template: .State.Stauts: no field "Stauts" (State has Dead, Error, ExitCode, ...)``):
docker gives that error for a typed object, and a typo should not print a silent blank.
``index`` on a map with a missing key gives an empty string, as Go's does for docker's
``map[string]string`` labels.

Text from the data is escaped for the terminal when it is printed (control characters as
``\\x1b``, see :func:`ctrstore.cli._common.printable`); ``json`` output is valid JSON with
such characters as ``\\u`` escapes. Every error is :class:`ctrstore.errdefs.InvalidArgument`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from ctrstore.cli._common import printable
from ctrstore.errdefs import InvalidArgument

__all__ = ["Template", "go_str", "safe_json"]


class Text(str):
    """Output that is already safe to print (from ``json``, ``printf``, ``join``...): it may
    hold a tab or newline the template itself asked for, which must not be escaped."""


# -- printing values as Go does -----------------------------------------------------------------
def _go_float(f: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``, which ``%v`` uses: shortest digits, an
    exponent when it is below -4 or at least 6 (``1e+06``, ``1.23456789e+08``)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    from decimal import Decimal

    d = Decimal(repr(f))
    exp = d.adjusted()
    if exp < -4 or exp >= 6:
        sign, digits, _ = d.as_tuple()
        mant = "".join(map(str, digits)).rstrip("0") or "0"
        m = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
        return f"{'-' if sign else ''}{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def go_str(v: Any) -> str:
    """``fmt.Sprint(v)`` for JSON-like data."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v, key=str)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if callable(v):
        return "<func>"
    return str(v)


def _escape_nonprintable(text: str) -> str:
    return "".join(
        c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) < 0x10000 else _surrogates(c)) for c in text
    )


def _surrogates(c: str) -> str:
    n = ord(c) - 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items() if not callable(x)}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def safe_json(v: Any, indent: int | None = None) -> str:
    """JSON as Go's encoder writes it without HTML escaping (``<``, ``>``, ``&`` as they are,
    non-ASCII letters as they are), with every character that is not printable (controls,
    bidi overrides, lone surrogates) as a ``\\u`` escape, so that it is safe on a terminal and
    still the same JSON to a parser. Functions in the data (``Label``) are left out."""
    try:
        text = json.dumps(
            _jsonable(v),
            ensure_ascii=False,
            indent=indent,
            separators=(",", ": ") if indent is not None else (",", ":"),
            allow_nan=False,
        )
    except ValueError as e:
        raise InvalidArgument(f"template: json: {e}") from None
    if text.isprintable() or (indent is not None and text.replace("\n", "").isprintable()):
        return text
    if indent is None:
        return _escape_nonprintable(text)
    return "\n".join(_escape_nonprintable(line) for line in text.split("\n"))


def _emit(v: Any) -> str:
    if isinstance(v, Text):
        return str(v)
    return printable(go_str(v))


def _truth(v: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if v is None or v is False:
        return False
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | list | tuple | Mapping):
        return len(v) > 0
    return True


# -- lexing ---------------------------------------------------------------------------------------
class TemplateError(InvalidArgument):
    pass


def _err(msg: str) -> TemplateError:
    return TemplateError(f"template: {msg}")


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<decl>:=|=(?!=))
  | (?P<punct>[|(),])
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?))
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)

_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b"}
_GO_ESCAPES |= {"f": "\f", "v": "\v", "0": "\0"}


def _unquote(s: str) -> str:
    body = s[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in ("x", "u", "U"):
            n = {"x": 2, "u": 4, "U": 8}[nxt]
            hexd = body[i + 2 : i + 2 + n]
            if len(hexd) != n or not all(h in "0123456789abcdefABCDEF" for h in hexd):
                raise _err(f"invalid escape in {s}")
            out.append(chr(int(hexd, 16)))
            i += 2 + n
        elif nxt in _GO_ESCAPES:
            out.append(_GO_ESCAPES[nxt])
            i += 2
        else:
            raise _err(f"invalid escape \\{nxt} in {s}")
    return "".join(out)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(action: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(action):
        m = _TOKEN.match(action, pos)
        if m is None:
            raise _err(f"unexpected {action[pos : pos + 10]!r} in {{{{{action.strip()}}}}}")
        kind = m.lastgroup or ""
        text = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        out.append(_Tok(kind, text))
    return out


# -- the tree -------------------------------------------------------------------------------------
@dataclass
class _Field:
    names: list[str]
    base: Any = None
    """None: the dot; a ``_Var``; or a ``_Pipe`` (a parenthesised pipeline)."""


@dataclass
class _Var:
    name: str
    names: list[str] = field(default_factory=list)


@dataclass
class _Lit:
    value: Any


@dataclass
class _Func:
    name: str


_Operand = Union[_Field, _Var, _Lit, _Func, "_Pipe"]


@dataclass
class _Cmd:
    args: list[_Operand]


@dataclass
class _Pipe:
    cmds: list[_Cmd]
    decl: list[str] = field(default_factory=list)
    assign: bool = False
    """``$x = v`` (an existing variable) rather than ``$x := v``."""


@dataclass
class _TextNode:
    text: str


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _Branch:
    kind: str  # if, range, with
    pipe: _Pipe
    body: list[_Node]
    orelse: list[_Node]


_Node = _TextNode | _Action | _Branch


_SPACE = " \t\r\n"


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items = list(self._split(source))
        self.pos = 0

    @staticmethod
    def _split(src: str) -> Iterator[tuple[str, str]]:
        """``("text", s)`` and ``("action", s)`` pieces, with ``{{-``/``-}}`` trimming done
        and comments dropped."""
        pieces: list[tuple[str, str]] = []
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos:] if start < 0 else src[pos:start]
            if trim_next:
                text = text.lstrip(_SPACE)
            if start < 0:
                pieces.append(("text", text))
                break
            i = start + 2
            if src.startswith("-", i) and src[i + 1 : i + 2] in tuple(_SPACE):
                text = text.rstrip(_SPACE)
                i += 1
            pieces.append(("text", text))
            if src[i:].lstrip(_SPACE).startswith("/*"):
                end = src.find("*/", i)
                if end < 0:
                    raise _err("unclosed comment")
                j = end + 2
                trim_next = src[j : j + 1] in tuple(_SPACE) and src.startswith("-}}", j + 1)
                close = j + 1 if trim_next else j
                if not src.startswith("}}", close + (1 if trim_next else 0)):
                    raise _err("comment ends before closing delimiter")
                pos = close + (3 if trim_next else 2)
                continue
            close = _find_close(src, i)
            if close < 0:
                raise _err(f"unclosed action at {src[start : start + 20]!r}")
            inner = src[i:close]
            trim_next = len(inner) >= 2 and inner[-1] == "-" and inner[-2] in _SPACE
            if trim_next:
                inner = inner[:-1]
            pieces.append(("action", inner))
            pos = close + 2
        yield from ((k, s) for k, s in pieces if k == "action" or s)

    def parse(self) -> list[_Node]:
        nodes, end = self._list()
        if end is not None:
            raise _err(f"unexpected {{{{{end}}}}}")
        return nodes

    def _list(self) -> tuple[list[_Node], str | None]:
        """Nodes up to an ``else``/``end`` (returned as the second item) or the end."""
        nodes: list[_Node] = []
        while self.pos < len(self.items):
            kind, s = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(_TextNode(s))
                continue
            toks = _tokens(s)
            if not toks:
                raise _err("missing value for command")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                return nodes, s.strip()
            if head.kind == "ident" and head.text in ("if", "range", "with"):
                nodes.append(self._branch(head.text, toks[1:]))
                continue
            if head.kind == "ident" and head.text in ("define", "template", "block", "break", "continue"):
                raise _err(f"{{{{{head.text}}}}} is not supported")
            nodes.append(_Action(_PipeParser(toks).pipeline()))
        return nodes, None

    def _branch(self, kind: str, toks: list[_Tok]) -> _Branch:
        if not toks:
            raise _err(f"missing value for {kind}")
        pipe = _PipeParser(toks).pipeline()
        body, end = self._list()
        orelse: list[_Node] = []
        if end is None:
            raise _err(f"unexpected EOF: {{{{{kind}}}}} without {{{{end}}}}")
        if end.startswith("else"):
            rest = end[len("else") :].strip()
            if rest:  # else if ... / else with ...
                etoks = _tokens(rest)
                if etoks[0].kind != "ident" or etoks[0].text not in ("if", "with"):
                    raise _err(f"unexpected {{{{else {rest}}}}}")
                orelse = [self._branch(etoks[0].text, etoks[1:])]
                return _Branch(kind, pipe, body, orelse)
            orelse, end2 = self._list()
            if end2 != "end":
                raise _err(f"expected {{{{end}}}} after {{{{else}}}} of {{{{{kind}}}}}")
        elif end != "end":
            raise _err(f"unexpected {{{{{end}}}}}")
        return _Branch(kind, pipe, body, orelse)


def _find_close(src: str, start: int) -> int:
    """The ``}}`` that closes an action, skipping quoted strings (which may hold ``}}``)."""
    i = start
    while i < len(src):
        c = src[i]
        if c in "\"'`":
            j = i + 1
            while j < len(src) and src[j] != c:
                j += 2 if src[j] == "\\" and c != "`" else 1
            i = j + 1
            continue
        if src.startswith("}}", i):
            return i
        i += 1
    return -1


class _PipeParser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def _peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def pipeline(self, until: str | None = None) -> _Pipe:
        decl: list[str] = []
        assign = False
        # $x := ..., $i, $v := ...
        save = self.pos
        names: list[str] = []
        while (t := self._peek()) is not None and t.kind == "var":
            names.append(t.text)
            self.pos += 1
            t2 = self._peek()
            if t2 is not None and t2.kind == "punct" and t2.text == ",":
                self.pos += 1
                continue
            break
        t = self._peek()
        if names and t is not None and t.kind == "decl":
            decl = names
            assign = t.text == "="
            self.pos += 1
        else:
            self.pos = save
        cmds = [self._command(until)]
        while (t := self._peek()) is not None and t.kind == "punct" and t.text == "|":
            self.pos += 1
            cmds.append(self._command(until))
        t = self._peek()
        if until is None and t is not None:
            raise _err(f"unexpected {t.text!r}")
        return _Pipe(cmds, decl, assign)

    def _command(self, until: str | None) -> _Cmd:
        args: list[_Operand] = []
        while (t := self._peek()) is not None:
            if t.kind == "punct" and t.text in ("|", ")"):
                break
            if t.kind == "punct" and t.text == ",":
                raise _err("unexpected ','")
            args.append(self._operand())
        if not args:
            raise _err("missing value for command")
        return _Cmd(args)

    def _operand(self) -> _Operand:
        t = self.toks[self.pos]
        self.pos += 1
        if t.kind == "field":
            return _Field([] if t.text == "." else t.text[1:].split("."))
        if t.kind == "var":
            nxt = self._peek()
            if nxt is not None and nxt.kind == "field" and nxt.text != ".":
                self.pos += 1
                return _Var(t.text, nxt.text[1:].split("."))
            return _Var(t.text)
        if t.kind in ("str", "raw"):
            return _Lit(_unquote(t.text) if t.kind == "str" else t.text[1:-1])
        if t.kind == "char":
            return _Lit(ord(_unquote('"' + t.text[1:-1] + '"')))
        if t.kind == "num":
            text = t.text
            try:
                if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", text):
                    return _Lit(int(text, 16))
                if re.fullmatch(r"[-+]?\d+", text):
                    return _Lit(int(text))
                return _Lit(float(text))
            except ValueError:
                raise _err(f"bad number {text}") from None
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return _Lit(t.text == "true")
            if t.text == "nil":
                return _Lit(None)
            if t.text not in _FUNCS:
                raise _err(f'function "{t.text}" not defined')
            return _Func(t.text)
        if t.kind == "punct" and t.text == "(":
            inner = self.pipeline(until=")")
            close = self._peek()
            if close is None or close.text != ")":
                raise _err("unclosed '('")
            self.pos += 1
            nxt = self._peek()
            if nxt is not None and nxt.kind == "field" and nxt.text != ".":
                self.pos += 1
                return _Field(nxt.text[1:].split("."), base=inner)
            return inner
        raise _err(f"unexpected {t.text!r}")


# -- functions ------------------------------------------------------------------------------------
def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if v is None:
            raise _err("index of untyped nil")
        if isinstance(v, Mapping):
            v = v.get(k if isinstance(k, str) else str(k), "")
        elif isinstance(v, list | tuple | str):
            if not isinstance(k, int) or isinstance(k, bool):
                raise _err(f"cannot index a list with {go_str(k)!r}")
            if not 0 <= k < len(v):
                raise _err(f"index out of range: {k}")
            v = v[k]
        else:
            raise _err(f"can't index item of type {_type(v)}")
    return v


def _join(elems: Any, sep: str) -> Text:
    if elems is None:
        return Text("")
    if isinstance(elems, Mapping):
        parts = sorted(printable(go_str(x)) for x in elems.values())
    elif isinstance(elems, list | tuple):
        parts = [_emit(x) for x in elems]
    else:
        raise _err(f"join: expected a list, got {_type(elems)}")
    return Text(str(sep).join(parts))


def _split(s: Any, sep: Any) -> list[str]:
    s, sep = str(s), str(sep)
    return list(s) if sep == "" else s.split(sep)


def _pad(s: Any, prefix: int, suffix: int) -> Any:
    s = go_str(s)
    return s if s == "" else " " * int(prefix) + s + " " * int(suffix)


def _truncate(s: Any, n: int) -> str:
    text = go_str(s)
    return text if len(text) < int(n) else text[: int(n)]


def _len(v: Any) -> int:
    if isinstance(v, str | list | tuple | Mapping):
        return len(v)
    raise _err(f"len of type {_type(v)}")


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+))?([a-zA-Z%])")


def _printf(fmt: Any, *args: Any) -> Text:
    """Go's ``fmt.Sprintf`` for the verbs scripts use: ``%s %v %d %q %x %X %o %c %f %e %g %t
    %%`` with the flags ``-+ 0#``, width and precision. Text from the data is escaped as it
    goes in."""
    fmt = str(fmt)
    out: list[str] = []
    i = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if width == "*" or prec == "*":
            out.append(f"%!{verb}(BADWIDTH)")
            continue
        if i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[i]
        i += 1
        out.append(_format_verb(verb, arg, flags, int(width or 0), None if prec is None else int(prec)))
    out.append(fmt[pos:])
    if i < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_type(a)}={_emit(a)}" for a in args[i:]) + ")")
    return Text("".join(out))


def _bad(verb: str, arg: Any) -> str:
    return f"%!{verb}({_type(arg)}={_emit(arg)})"


def _format_verb(verb: str, arg: Any, flags: str, width: int, prec: int | None) -> str:
    left, zero = "-" in flags, "0" in flags and "-" not in flags
    sign = "+" if "+" in flags else " " if " " in flags else ""
    if verb in "svq":
        if verb == "q":
            text = safe_json(go_str(arg))
        else:
            text = _emit(arg)
            if prec is not None:
                text = text[:prec]
    elif verb == "t":
        if not isinstance(arg, bool):
            return _bad(verb, arg)
        text = go_str(arg)
    elif verb in "dxXoc":
        if not isinstance(arg, int) or isinstance(arg, bool):
            return _bad(verb, arg)
        if verb == "c":
            text = printable(chr(arg)) if 0 <= arg <= 0x10FFFF else "\ufffd"
        else:
            alt = "#" if "#" in flags and verb != "d" else ""
            text = format(arg, f"{sign}{alt}{'' if verb == 'd' else verb}")
            if alt and verb == "o":
                text = text.replace("0o", "0", 1)
            if zero and width and not left:
                return format(arg, f"{sign}{alt}0{width}{'' if verb == 'd' else verb}")
    elif verb in "feEgG":
        if isinstance(arg, bool) or not isinstance(arg, int | float):
            return _bad(verb, arg)
        p = "" if prec is None else f".{prec}"
        if zero and width and not left:
            return format(float(arg), f"{sign}0{width}{p}{verb}")
        text = format(float(arg), f"{sign}{p}{verb}")
    else:
        return _bad(verb, arg)
    return text.ljust(width) if left else text.rjust(width)


def _type(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        return "map"
    if isinstance(v, list | tuple):
        return "slice"
    return type(v).__name__


def _cmp(op: str) -> Callable[..., bool]:
    def f(a: Any, b: Any, *more: Any) -> bool:
        if op == "eq":
            return any(_eq(a, x) for x in (b, *more))
        if more:
            raise _err(f"{op}: too many arguments")
        if op == "ne":
            return not _eq(a, b)
        x: Any = a
        y: Any = b
        numbers = isinstance(a, int | float) and isinstance(b, int | float)
        if not numbers and not (isinstance(a, str) and isinstance(b, str)):
            raise _err(f"{op}: incompatible types for comparison ({_type(a)}, {_type(b)})")
        return bool({"lt": x < y, "le": x <= y, "gt": x > y, "ge": x >= y}[op])

    return f


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _slice(v: Any, *idx: int) -> Any:
    if not isinstance(v, str | list | tuple):
        raise _err(f"can't slice item of type {_type(v)}")
    if len(idx) > 2:
        raise _err("slice: too many indexes")
    return v[slice(*idx)] if idx else v


def _print(*args: Any) -> Text:
    # Go's Sprint adds spaces between operands when neither is a string.
    out: list[str] = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_emit(a))
    return Text("".join(out))


def _println(*args: Any) -> Text:
    return Text(" ".join(_emit(a) for a in args) + "\n")


_FUNCS: dict[str, Callable[..., Any]] = {
    "json": lambda v: Text(safe_json(v)),
    "join": _join,
    "split": _split,
    "upper": lambda s: Text(s.upper()) if isinstance(s, Text) else go_str(s).upper(),
    "lower": lambda s: Text(s.lower()) if isinstance(s, Text) else go_str(s).lower(),
    "title": lambda s: re.sub(r"\b[a-z]", lambda m: m.group().upper(), go_str(s)),
    "pad": _pad,
    "truncate": _truncate,
    "index": _index,
    "len": _len,
    "printf": _printf,
    "print": _print,
    "println": _println,
    "eq": _cmp("eq"),
    "ne": _cmp("ne"),
    "lt": _cmp("lt"),
    "le": _cmp("le"),
    "gt": _cmp("gt"),
    "ge": _cmp("ge"),
    "not": lambda v: not _truth(v),
    "slice": _slice,
}
# and/or evaluate lazily (Go 1.18+): handled in _Exec.command.
_FUNCS["and"] = _FUNCS["or"] = lambda *a: a[-1]

_HEADER_IDENTITY = {"json", "split", "join", "title", "lower", "upper", "truncate"}
"""docker's ``HeaderFunctions``: in a table header these give back their first argument."""


# -- execution ------------------------------------------------------------------------------------
class _Exec:
    def __init__(self, root: Any, headers: Mapping[str, str] | None) -> None:
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.headers = headers
        self.out: list[str] = []

    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise _err(f'undefined variable "{name}"')

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise _err(f'undefined variable "{name}"')

    def run(self, nodes: Sequence[_Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _TextNode):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                v = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(_emit(v))
            else:
                self.branch(node, dot)

    def branch(self, b: _Branch, dot: Any) -> None:
        mark = len(self.vars)
        try:
            v = self.pipe(b.pipe, dot, range_decl=b.kind == "range")
            if b.kind == "if":
                self.run(b.body if _truth(v) else b.orelse, dot)
            elif b.kind == "with":
                if _truth(v):
                    self.run(b.body, v)
                else:
                    self.run(b.orelse, dot)
            else:
                self._range(b, v, dot)
        finally:
            del self.vars[mark:]

    def _range(self, b: _Branch, v: Any, dot: Any) -> None:
        if self.headers is not None:
            return  # a header line has nothing to range over
        if v is None:
            items: list[tuple[Any, Any]] = []
        elif isinstance(v, Mapping):
            items = [(k, v[k]) for k in sorted(v, key=str)]
        elif isinstance(v, list | tuple):
            items = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            items = [(i, i) for i in range(v)]
        else:
            raise _err(f"range can't iterate over {printable(go_str(v))}")
        if not items:
            self.run(b.orelse, dot)
            return
        decl = b.pipe.decl
        mark = len(self.vars)
        for k, x in items:
            del self.vars[mark:]
            if len(decl) == 1:
                self.vars.append((decl[0], x))
            elif len(decl) == 2:
                self.vars.extend([(decl[0], k), (decl[1], x)])
            self.run(b.body, x)

    def pipe(self, p: _Pipe, dot: Any, *, range_decl: bool = False) -> Any:
        v: Any = None
        first = True
        for cmd in p.cmds:
            v = self.command(cmd, dot, None if first else (v,))
            first = False
        if p.decl and not range_decl:
            if len(p.decl) != 1:
                raise _err("too many declarations")
            if p.assign:
                self.set_var(p.decl[0], v)
            else:
                self.vars.append((p.decl[0], v))
        return v

    def command(self, cmd: _Cmd, dot: Any, piped: tuple[Any, ...] | None) -> Any:
        head = cmd.args[0]
        if isinstance(head, _Func):
            if head.name in ("and", "or"):
                args = [*cmd.args[1:]]
                if not args and not piped:
                    raise _err(f"{head.name}: missing arguments")
                v: Any = None
                for a in args:
                    v = self.operand(a, dot)
                    if _truth(v) != (head.name == "and"):
                        return v
                return piped[0] if piped else v
            values = [self.operand(a, dot) for a in cmd.args[1:]]
            if piped:
                values.append(piped[0])
            if self.headers is not None and head.name in _HEADER_IDENTITY:
                return values[0] if values else ""
            try:
                return _FUNCS[head.name](*values)
            except TypeError:
                raise _err(f"wrong number or type of arguments for {head.name}") from None
            except TemplateError:
                raise
            except (ValueError, KeyError, IndexError, AttributeError) as e:
                raise _err(f"{head.name}: {e}") from None
        if len(cmd.args) == 1 and not piped:
            return self.operand(head, dot)
        # a method with arguments: .Label "x"
        fn = self.operand(head, dot, call=False)
        values = [self.operand(a, dot) for a in cmd.args[1:]]
        if piped:
            values.append(piped[0])
        if self.headers is not None:
            return fn
        if not callable(fn):
            raise _err(f"{_describe(head)} is not a method but has arguments")
        try:
            return fn(*values)
        except TypeError:
            raise _err(f"wrong number of arguments for {_describe(head)}") from None

    def operand(self, op: _Operand, dot: Any, *, call: bool = True) -> Any:
        if isinstance(op, _Lit):
            return Text(op.value) if isinstance(op.value, str) else op.value
        if isinstance(op, _Func):
            if op.name in ("and", "or"):
                raise _err(f"{op.name}: missing arguments")
            return self.command(_Cmd([op]), dot, None)
        if isinstance(op, _Pipe):
            return self.pipe(op, dot)
        if isinstance(op, _Var):
            return self.fields(self.var(op.name), op.names, op.name, call)
        if op.base is None:
            return self.fields(dot, op.names, "", call)
        base = self.pipe(op.base, dot) if isinstance(op.base, _Pipe) else self.operand(op.base, dot)
        return self.fields(base, op.names, "(...)", call)

    def fields(self, v: Any, names: list[str], where: str, call: bool) -> Any:
        if self.headers is not None and names:
            return self.headers.get(names[0], _default_header(names[0])) if where == "" else ""
        path = where
        for i, name in enumerate(names):
            parent = path or "."
            path = f"{path}.{name}"
            if isinstance(v, Mapping):
                if name not in v:
                    known = ", ".join(sorted(k for k in v if isinstance(k, str)))
                    raise _err(
                        f'{printable(path)}: no field "{printable(name)}" in {printable(parent)}'
                        + (f" (it has {printable(known)})" if known else " (it is empty)")
                    )
                v = v[name]
            elif v is None:
                raise _err(f"{printable(path)}: nil pointer evaluating {printable(parent)}")
            else:
                raise _err(f"{printable(path)}: can't evaluate field {name} in type {_type(v)}")
            if callable(v) and (call or i < len(names) - 1):
                try:
                    v = v()
                except TypeError:
                    raise _err(f"{printable(path)} needs arguments") from None
        return v


def _describe(op: _Operand) -> str:
    if isinstance(op, _Field):
        return "." + ".".join(op.names)
    if isinstance(op, _Var):
        return op.name + "".join("." + n for n in op.names)
    return "operand"


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _default_header(name: str) -> str:
    """A column header for a field the header table does not name: ``BlobSize`` -> ``BLOB SIZE``."""
    return _CAMEL.sub(" ", name).upper()


class Template:
    """A parsed template. ``Template(text).render(obj)`` gives the text; ``render_header``
    gives a table's header line, docker's way: each field replaced by its column name."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = _Parser(source).parse()

    def render(self, data: Any) -> str:
        ex = _Exec(data, None)
        ex.run(self.nodes, data)
        return "".join(ex.out)

    def render_header(self, headers: Mapping[str, str]) -> str:
        ex = _Exec(headers, headers)
        try:
            ex.run(self.nodes, headers)
        except InvalidArgument:
            pass  # as docker: a header is best effort
        return "".join(ex.out)
