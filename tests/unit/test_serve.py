"""The pieces of ``ctrstore serve`` that need no server: Range parsing, credentials files and
their checks, how image names split into repositories, what a manifest's JSON says it is."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ctrstore.errdefs import InvalidArgument
from ctrstore.server.auth import Authenticator, load_htpasswd, load_tokens
from ctrstore.server.errors import ApiError
from ctrstore.server.httpd import parse_range
from ctrstore.server.registry import _split_name, check_digest, check_host, sniff_media_type

#: bcrypt (cost 4) of "s3cret", as in tests/integration/conftest.py
BCRYPT = "$2b$04$kiVeV8veSL/7UL8dTQ8QoOH1grEgRVTeBP0AEcId1qCQzx4Ibqe8m"


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes = 2 - 3", 10, (2, 3)),
        ("BYTES=1-1", 10, (1, 1)),
        ("bytes=0-1,3-4", 10, None),  # several ranges: the whole blob
        ("items=0-1", 10, None),
        ("bytes=4-2", 10, None),
        ("bytes=-", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, want: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == want


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=0-", 0), ("bytes=-0", 10)])
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(ApiError) as e:
        parse_range(header, size)
    assert e.value.status == 416 and e.value.headers == {"Content-Range": f"bytes */{size}"}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_htpasswd_bcrypt(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    f.write_text(f"# users\nalice:{BCRYPT}\n\n")
    auth = Authenticator(load_htpasswd(f))
    assert auth.challenge == 'Basic realm="ctrstore"'
    assert auth.check(_basic("alice", "s3cret")) == "alice"
    assert auth.check(_basic("alice", "s3cret")) == "alice"  # from the cache
    assert auth.check(_basic("alice", "s3cret!")) is None
    assert auth.check(_basic("bob", "s3cret")) is None
    assert auth.check("Basic !!!") is None
    assert auth.check("Bearer x") is None
    assert auth.check(None) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice\n", "line 1: expected USER:HASH"),
        (f"alice:{BCRYPT}\nbob:$apr1$xyz$abc\n", "line 2: user 'bob': unsupported password hash"),
        ("alice:{SHA}abc=\n", "unsupported password hash"),
        ("alice:$2b$04$short\n", "line 1: user 'alice': the password hash is malformed"),
        (f"alice:{BCRYPT}\nalice:{BCRYPT}\n", "line 2: user 'alice' appears twice"),
        ("# nobody\n", "names no user"),
    ],
)
def test_htpasswd_refused(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "htpasswd"
    f.write_text(text)
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace("$", r"\$")):
        load_htpasswd(f)


def test_tokens(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("# two\n" + "a" * 16 + "\n" + "b" * 20 + "\n")
    auth = Authenticator(None, load_tokens(f))
    assert auth.challenge == 'Bearer realm="ctrstore"'
    assert auth.check("Bearer " + "b" * 20) == "token:2"
    assert auth.check("bearer " + "a" * 16) == "token:1"
    assert auth.check("Bearer " + "a" * 15) is None
    assert auth.check(_basic("a", "b")) is None
    bad_files = (("short\n", "too short"), ("a b c d e f g h i j k\n", "visible ASCII"), ("", "no token"))
    for bad, message in bad_files:
        f.write_text(bad)
        with pytest.raises(InvalidArgument, match=message):
            load_tokens(f)


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("127.0.0.1:5000/team/app:1", ("127.0.0.1:5000", "team/app", "1")),
        ("docker.io/library/alpine:3.19", ("docker.io", "library/alpine", "3.19")),
        ("localhost/app@sha256:" + "a" * 64, ("localhost", "app", None)),
        ("h/app:1@sha256:" + "a" * 64, ("h", "app", "1")),
        ("noslash", None),
        ("h/app", None),  # neither tag nor digest
        ("h/App:1", None),
    ],
)
def test_split_name(name: str, want: tuple[str, str, str | None] | None) -> None:
    assert _split_name(name) == want


def test_checks() -> None:
    for ok in ("127.0.0.1:5000", "docker.io", "[::1]:5000", "localhost"):
        assert check_host(ok, "t") == ok
    for bad in ("a b", "host:port", "-x.io", ""):
        with pytest.raises(ApiError, match="invalid registry host"):
            check_host(bad, "t")
    with pytest.raises(ApiError) as e:
        check_digest("sha512:" + "a" * 128)
    assert e.value.code == "DIGEST_INVALID"


def test_sniff_media_type() -> None:
    oci_m = "application/vnd.oci.image.manifest.v1+json"
    assert sniff_media_type({"schemaVersion": 2, "mediaType": oci_m}) == oci_m
    assert sniff_media_type({"schemaVersion": 2, "config": {}, "layers": []}) == oci_m
    oci_i = "application/vnd.oci.image.index.v1+json"
    assert sniff_media_type({"schemaVersion": 2, "manifests": []}) == oci_i
    assert sniff_media_type({"schemaVersion": 2, "mediaType": "application/json"}) is None
    assert sniff_media_type({"schemaVersion": 1, "fsLayers": []}) is None
    assert sniff_media_type({"architecture": "amd64", "rootfs": {}}) is None  # a config
