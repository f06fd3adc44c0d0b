"""References: normalisation as docker does it, the parts, and errors that name what is wrong.
(Moved here from tests/integration/test_remotes.py; new cases below them.)"""

from __future__ import annotations

import pytest

from ctrstore.errdefs import InvalidArgument
from ctrstore.remotes.reference import Reference, normalize, parse

D = "sha256:" + "ab" * 32

NORMALISED = [
    ("redis", "docker.io/library/redis:latest", "redis:latest"),
    ("redis:alpine3.13", "docker.io/library/redis:alpine3.13", "redis:alpine3.13"),
    ("library/redis", "docker.io/library/redis:latest", "redis:latest"),
    ("docker.io/redis", "docker.io/library/redis:latest", "redis:latest"),
    ("index.docker.io/library/redis:7", "docker.io/library/redis:7", "redis:7"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
    ("host:5000/repo@" + D, "host:5000/repo@" + D, "host:5000/repo@" + D),
    ("quay.io/a/b:t@" + D, "quay.io/a/b:t@" + D, "quay.io/a/b:t@" + D),
    ("redis@" + D, "docker.io/library/redis@" + D, "redis@" + D),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
    ("a.b/c/d/e_f__g-h--i.j:T_1.x-y", "a.b/c/d/e_f__g-h--i.j:T_1.x-y", "a.b/c/d/e_f__g-h--i.j:T_1.x-y"),
]


@pytest.mark.parametrize(("given", "full", "familiar"), NORMALISED)
def test_reference_normalisation(given: str, full: str, familiar: str) -> None:
    ref = parse(given)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert parse(full) == ref


def test_reference_parts() -> None:
    r = parse("host:5000/team/app:1@" + D)
    assert r == Reference("host:5000", "team/app", "1", D)
    assert r.name == "host:5000/team/app"
    assert r.object == D
    assert str(r.docker_ref()) == "host:5000/team/app@" + D
    assert parse("redis", default_tag=False).tag is None


BAD = [
    ("Redis", "must be lowercase"),
    ("docker.io/Library/redis", "must be lowercase"),
    ("a b", "white space"),
    ("", "empty"),
    ("x:", "invalid tag ''"),
    (":tag", "no repository name"),
    ("host.com/", "no repository path"),
    ("a//b", "empty path component"),
    ("-x", "invalid repository path component '-x'"),
    ("x:-1", "invalid tag '-1'"),
    ("x:" + "a" * 129, "invalid tag"),
    ("x@sha256:abc", "want 64 lower-case hex"),
    ("x@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
    ("x@nodigest", "invalid digest"),
    ("ab" * 32, "64-byte hexadecimal"),
    ("bad_host.com:x/y", "invalid registry host"),
    ("a/" + "b" * 300, "longer than 255"),
]


@pytest.mark.parametrize(("given", "message"), BAD)
def test_reference_errors(given: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid reference") as ei:
        parse(given)
    assert message in str(ei.value)


def test_reference_with_tag_digest_and_normalize() -> None:
    r = parse("redis:7")
    assert str(r.with_digest(D)) == "docker.io/library/redis@" + D
    assert str(r.with_tag("8")) == "docker.io/library/redis:8"
    assert r.host == r.domain == "docker.io" and r.object == "7"
    with pytest.raises(InvalidArgument, match="invalid tag"):
        r.with_tag("-x")
    with pytest.raises(InvalidArgument, match="want 64 lower-case hex"):
        r.with_digest("sha256:abc")
    assert normalize("redis:7@" + D) == "docker.io/library/redis@" + D
    assert normalize("localhost:5000/x") == "localhost:5000/x:latest"
