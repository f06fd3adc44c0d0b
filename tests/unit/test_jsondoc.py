"""Strict JSON and typed fields: ``ctrstore.jsondoc``, ``Descriptor.from_json``,
``Platform.from_json``, the image document checks in ``ctrstore.images``, ``max_layers`` in
config.toml and the CLI's escaping of control characters."""

from __future__ import annotations

from typing import Any

import pytest

from ctrstore import InvalidArgument
from ctrstore.cli._common import labels_text, printable
from ctrstore.config import DEFAULT_MAX_LAYERS, parse
from ctrstore.content import Descriptor
from ctrstore.images import (
    MAX_DOCUMENT_SIZE,
    check_document_size,
    parse_index,
    parse_manifest,
    rootfs_diff_ids,
    validate_config,
)
from ctrstore.images import mediatypes as mt
from ctrstore.images.platforms import Platform
from ctrstore.jsondoc import MAX_DEPTH, loads, want_int

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text,message",
    [
        (b"\xff{}", "not UTF-8 text (byte 0"),
        ("{}".encode("utf-16"), "not UTF-8"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a byte-order mark
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels"),
        (b"[" * 1_000_000, f"nested more than {MAX_DEPTH} levels"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b"[Infinity]", "Infinity is not a JSON number"),
        (b"[-Infinity]", "Infinity is not a JSON number"),
        (b"1" * 5000, "not valid JSON"),
        (b'"\\ud800"', "unpaired UTF-16 surrogate"),
        (b'{"a": "\\udc00x"}', "unpaired UTF-16 surrogate"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_loads_refuses(text: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^doc: .*{message}".replace("(", r"\(").replace("[", r"\[")):
        loads(text, "doc")


def test_loads_accepts() -> None:
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "doc") is not None
    assert loads('{"a": "\\ud83d\\ude00 \\\\ud800 [[[["}', "doc") == {"a": "\U0001f600 \\ud800 [[[["}
    assert loads(b'{"s": "]]]]}}}}"}', "doc") == {"s": "]]]]}}}}"}
    assert loads("{}", "doc") == {}


@pytest.mark.parametrize(
    "value,message",
    [
        (1.5, "must be an integer, not a number with a fraction or exponent"),
        (1e3, "must be an integer, not a number"),
        ("1", "must be an integer, not a string"),
        (True, "must be an integer, not a boolean"),
        (-1, "is -1, outside [0, 9223372036854775807]"),
        (2**63, "is 9223372036854775808, outside"),
        (10**100, "is a 101-digit number, outside"),
    ],
)
def test_want_int(value: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        want_int({"size": value}, "size", "doc")
    assert str(e.value) == f"doc: size {message}" or message in str(e.value)


def _d(**kw: Any) -> dict[str, Any]:
    return {"mediaType": mt.OCI_LAYER, "digest": D, "size": 3, **kw}


@pytest.mark.parametrize(
    "doc,message",
    [
        ("x", "must be an object, not a string"),
        ({"size": 1}, "digest is missing"),
        (_d(digest=None), "digest is missing"),
        (_d(digest="sha256:" + "A" * 64), "invalid digest"),
        (_d(digest="sha256:../../etc/passwd"), "invalid digest"),
        (_d(digest="x" * 10_000), "10000 characters long"),
        (_d(size=None), "size is missing"),
        (_d(size=2**64), "outside"),
        (_d(mediaType=["x"]), "mediaType must be a string"),
        (_d(annotations={"a": None}), "annotations['a'] must be a string, not null"),
        (_d(annotations="a=b"), "annotations must be an object"),
        (_d(urls=[1]), "urls[0] must be a string"),
        (_d(platform=[]), "platform must be an object"),
        (_d(platform={"os": "linux", "os.features": "x"}), "platform.os.features must be an array"),
        (_d(platform={"variant": 7}), "platform.variant must be a string"),
    ],
)
def test_descriptor_from_json_refuses(doc: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        Descriptor.from_json(doc, "layers[0]")
    assert str(e.value).startswith("layers[0]: ") and message in str(e.value), str(e.value)


def test_descriptor_from_json_accepts() -> None:
    d = Descriptor.from_json(_d(annotations={"a": "b"}, urls=["u"], platform={"os": "linux"}))
    assert d == Descriptor(mt.OCI_LAYER, D, 3, {"a": "b"}, ["u"], {"os": "linux"})
    assert Descriptor.from_json({"digest": D, "size": 0}).media_type == ""


def test_platform_from_json() -> None:
    assert str(Platform.from_json({"os": "linux", "architecture": "arm64", "variant": "v8"})) == "linux/arm64"
    with pytest.raises(InvalidArgument, match=r"platform\.os must be a string"):
        Platform.from_json({"os": 1})
    with pytest.raises(InvalidArgument, match="must be an object"):
        Platform.from_json("linux/amd64")  # type: ignore[arg-type]


M = Descriptor(mt.OCI_MANIFEST, D, 10)
I = Descriptor(mt.OCI_INDEX, D, 10)  # noqa: E741


def test_manifest_and_index_checks() -> None:
    good = {"schemaVersion": 2, "config": _d(mediaType=mt.OCI_CONFIG), "layers": [_d()]}
    config, layers = parse_manifest(M, good)
    assert config.media_type == mt.OCI_CONFIG and len(layers) == 1
    cases: list[tuple[dict[str, Any], str]] = [
        ({"schemaVersion": 1}, "schemaVersion is 1, outside [2, 2]"),
        ({"mediaType": mt.OCI_INDEX}, "must not list manifests (it is an index)"),
        ({"layers": [_d(size="1")]}, "layers[0]: size must be an integer"),
        ({"subject": "x"}, "subject: must be an object"),
        ({"annotations": {"a": 1}}, "annotations['a'] must be a string"),
    ]
    for patch, message in cases:
        with pytest.raises(InvalidArgument) as e:
            parse_manifest(M, {**good, **patch})
        assert str(e.value).startswith(f"manifest {D}: ") and message in str(e.value), str(e.value)
    assert parse_index(I, {"manifests": [_d(mediaType=mt.OCI_MANIFEST)]})[0].media_type == mt.OCI_MANIFEST
    with pytest.raises(InvalidArgument, match="an index must not have config or layers"):
        parse_index(I, {"manifests": [], "mediaType": mt.OCI_MANIFEST})
    with pytest.raises(InvalidArgument, match="manifests is missing"):
        parse_index(I, {})


def test_config_checks() -> None:
    ok = {"rootfs": {"type": "layers", "diff_ids": [D]}, "config": {"Env": ["A=1"], "Cmd": None}}
    assert validate_config(ok, "config x") is ok
    assert rootfs_diff_ids(ok, "config x") == [D]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"config": {"Env": "A=1"}}, "config.Env must be an array, not a string"),
        ({"config": {"Entrypoint": ["a", 1]}}, "config.Entrypoint[1] must be a string"),
        ({"config": {"Cmd": ["a\0"]}}, "config.Cmd[0] contains a NUL character"),
        ({"config": {"ArgsEscaped": "yes"}}, "config.ArgsEscaped must be true or false"),
        ({"config": {"StopSignal": 9}}, "config.StopSignal must be a string"),
        ({"rootfs": {"diff_ids": "x"}}, "rootfs.diff_ids must be an array"),
        ({"rootfs": {"diff_ids": ["sha256:x"]}}, "rootfs.diff_ids[0]: invalid digest"),
        ({"history": [{"empty_layer": 1}]}, "history[0].empty_layer must be true or false"),
        ({"architecture": 64}, "architecture must be a string"),
        ({"os.features": ["a", 1]}, "os.features[1] must be a string"),
    ]
    for doc, message in cases:
        with pytest.raises(InvalidArgument) as e:
            validate_config(doc, "config x")
        assert str(e.value) == f"config x: {message}" or message in str(e.value), str(e.value)
    with pytest.raises(InvalidArgument, match="rootfs is missing"):
        rootfs_diff_ids({}, "config x")


def test_document_size() -> None:
    check_document_size(Descriptor(mt.OCI_MANIFEST, D, MAX_DOCUMENT_SIZE))
    with pytest.raises(InvalidArgument, match="is more than the"):
        check_document_size(Descriptor(mt.OCI_CONFIG, D, MAX_DOCUMENT_SIZE + 1))


def test_max_layers_config() -> None:
    assert parse("").max_layers == DEFAULT_MAX_LAYERS
    assert parse("max_layers = 7").max_layers == 7
    for bad in ("max_layers = 0", 'max_layers = "7"', "max_layers = true", "max_layers = 1.5"):
        with pytest.raises(InvalidArgument, match="max_layers must be an integer"):
            parse(bad)
    assert "max_layers = 7" in parse("max_layers = 7").to_toml(effective=False)


def test_printable() -> None:
    assert printable("plain é 中 text") == "plain é 中 text"
    assert printable("a\x1b[31mb\nc\td\re\x00f\x7fg\x9bh\u202ei\udc80") == (
        "a\\x1b[31mb\\nc\\td\\re\\x00f\\x7fg\\x9bh\\u202ei\\udc80"
    )
    assert printable(printable("\x1b")) == printable("\x1b")
    assert labels_text({"k": "v\x1b"}) == "k=v\\x1b"
