"""JSON documents from untrusted sources (registries, archives, stored blobs): strict parsing
and typed field access, so that a hostile or broken document is an ``InvalidArgument`` naming
the document and the field, never a ``KeyError``, ``RecursionError`` or ``UnicodeDecodeError``.

:func:`loads` accepts only what Go's ``encoding/json`` (which containerd uses) would give an
image tool: UTF-8 text (no other encoding, no byte-order mark, no lone surrogate escapes),
no ``NaN``/``Infinity``, nesting at most :data:`MAX_DEPTH` deep, integers of at most a few
thousand digits. The ``want_*`` helpers check one field each; their error messages say
``<what>: <field> must be ...``, where ``what`` names the document (``manifest sha256:...``,
``archive x.tar: index.json``) and ``field`` the path in it (``layers[2].size``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from ctrstore.errdefs import InvalidArgument

__all__ = [
    "MAX_DEPTH",
    "MAX_INT64",
    "describe_type",
    "fail",
    "loads",
    "want_bool",
    "want_int",
    "want_list",
    "want_object",
    "want_str",
    "want_str_list",
    "want_str_map",
]

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects accepted (image documents need about 6)."""

MAX_INT64 = 2**63 - 1
"""The largest size or count a Go ``int64`` (an OCI descriptor's ``size``) can hold."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKETS = str.maketrans("[{]}", "(())")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def fail(what: str, message: str) -> NoReturn:
    raise InvalidArgument(f"{what}: {message}")


def _too_deep(text: str, limit: int) -> bool:
    """Whether ``text``'s arrays and objects nest deeper than ``limit``, checked without
    recursion: strings are dropped, brackets kept, and innermost ``()`` pairs are removed one
    level per pass (each pass is one C-speed ``str.replace``)."""
    s = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_BRACKETS)
    for _ in range(limit):
        if not s:
            return False
        t = s.replace("()", "")
        if t == s:
            return False  # unbalanced: not JSON, json.loads says why
        s = t
    return bool(s) and "()" in s


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: bytes | str, what: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` (a whole JSON document) strictly; raises InvalidArgument naming ``what``."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            fail(what, f"not UTF-8 text (byte {e.start}: {bytes(data)[e.start : e.start + 1]!r})")
    else:
        text = data
    if _too_deep(text, max_depth):
        fail(what, f"JSON nested more than {max_depth} levels deep")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        fail(what, f"not valid JSON: {e}")
    except RecursionError:
        fail(what, f"JSON nested more than {max_depth} levels deep")
    except ValueError as e:
        # NaN/Infinity, or an integer with more digits than Python converts.
        fail(what, f"not valid JSON: {e}")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            fail(what, "a string holds an unpaired UTF-16 surrogate escape (not Unicode text)")
    return doc


def describe_type(value: object) -> str:
    """The JSON name of ``value``'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _missing(obj: Mapping[str, Any], key: str, what: str, field: str, required: bool) -> bool:
    if obj.get(key) is None:
        if required:
            fail(what, f"{field} is missing")
        return True
    return False


def want_object(
    obj: Mapping[str, Any], key: str, what: str, field: str | None = None, *, required: bool = False
) -> dict[str, Any] | None:
    """``obj[key]`` if it is a JSON object; None if absent or null (unless ``required``)."""
    field = field or key
    if _missing(obj, key, what, field, required):
        return None
    value = obj[key]
    if not isinstance(value, dict):
        fail(what, f"{field} must be an object, not {describe_type(value)}")
    return value


def want_list(
    obj: Mapping[str, Any], key: str, what: str, field: str | None = None, *, required: bool = False
) -> list[Any] | None:
    field = field or key
    if _missing(obj, key, what, field, required):
        return None
    value = obj[key]
    if not isinstance(value, list):
        fail(what, f"{field} must be an array, not {describe_type(value)}")
    return value


def want_str(
    obj: Mapping[str, Any], key: str, what: str, field: str | None = None, *, required: bool = False
) -> str | None:
    field = field or key
    if _missing(obj, key, what, field, required):
        return None
    value = obj[key]
    if not isinstance(value, str):
        fail(what, f"{field} must be a string, not {describe_type(value)}")
    return value


def want_bool(obj: Mapping[str, Any], key: str, what: str, field: str | None = None) -> bool | None:
    field = field or key
    if _missing(obj, key, what, field, False):
        return None
    value = obj[key]
    if not isinstance(value, bool):
        fail(what, f"{field} must be true or false, not {describe_type(value)}")
    return value


def want_int(
    obj: Mapping[str, Any],
    key: str,
    what: str,
    field: str | None = None,
    *,
    required: bool = False,
    minimum: int = 0,
    maximum: int = MAX_INT64,
) -> int | None:
    """An integer in ``[minimum, maximum]`` (a 64-bit size by default): a float (``1.5``,
    ``1e3``), a string or a boolean is not one, nor is a number that overflows 64 bits."""
    field = field or key
    if _missing(obj, key, what, field, required):
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        fail(what, f"{field} must be an integer, not {describe_type(value)}")
    if not minimum <= value <= maximum:
        shown = str(value) if len(str(value)) <= 30 else f"a {len(str(value))}-digit number"
        fail(what, f"{field} is {shown}, outside [{minimum}, {maximum}]")
    return value


def want_str_list(
    obj: Mapping[str, Any], key: str, what: str, field: str | None = None, *, required: bool = False
) -> list[str] | None:
    field = field or key
    value = want_list(obj, key, what, field, required=required)
    if value is None:
        return None
    for i, v in enumerate(value):
        if not isinstance(v, str):
            fail(what, f"{field}[{i}] must be a string, not {describe_type(v)}")
    return value


def want_str_map(
    obj: Mapping[str, Any], key: str, what: str, field: str | None = None
) -> dict[str, str] | None:
    """An object whose values are all strings (labels, annotations)."""
    field = field or key
    value = want_object(obj, key, what, field)
    if value is None:
        return None
    for k, v in value.items():
        if not isinstance(v, str):
            fail(what, f"{field}[{k!r}] must be a string, not {describe_type(v)}")
    return value
