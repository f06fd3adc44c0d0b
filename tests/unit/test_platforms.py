"""Platforms as containerd's ``platforms`` package treats them: parsing and normalising
(architecture aliases, default variants), which platforms a host can run, best first, and how
a descriptor's platform ranks against the one wanted."""

from __future__ import annotations

import pytest

from ctrstore.errdefs import InvalidArgument
from ctrstore.images.platforms import Platform, compatible, host, normalize, rank


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/x86-64", Platform("linux", "amd64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64")),
        ("linux/arm64/8", Platform("linux", "arm64")),
        ("linux/arm", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/arm/v6", Platform("linux", "arm", "v6")),
        ("linux/i686", Platform("linux", "386")),
        ("linux/ppc64le", Platform("linux", "ppc64le")),
        ("windows/amd64", Platform("windows", "amd64")),
        (" linux/s390x ", Platform("linux", "s390x")),
        ("arm64", Platform("linux", "arm64")),  # an architecture alone: linux
    ],
)
def test_parse_normalises(text: str, want: Platform) -> None:
    assert Platform.parse(text) == want


def test_parse_os_alone_takes_the_hosts_architecture() -> None:
    h = host()
    assert Platform.parse("freebsd") == Platform("freebsd", h.architecture, h.variant)


@pytest.mark.parametrize("text", ["", "/", "linux/", "/amd64", "linux//v7", "a/b/c/d"])
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid platform"):
        Platform.parse(text)


def test_str_round_trips() -> None:
    for text in ("linux/amd64", "linux/arm/v7", "linux/arm64", "windows/amd64"):
        assert str(Platform.parse(text)) == text


def test_normalize_is_idempotent() -> None:
    for p in (
        Platform("linux", "x86_64"),
        Platform("linux", "armel", ""),
        Platform("linux", "aarch64", "v8"),
    ):
        once = normalize(p)
        assert normalize(once) == once


def test_host_is_normalised() -> None:
    h = host()
    assert h.os == "linux" and normalize(h) == h
    assert h.architecture in {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"}


def test_from_json_checks_field_types() -> None:
    assert Platform.from_json({"os": "linux", "architecture": "x86_64"}) == Platform("linux", "amd64")
    assert Platform.from_json({}) == Platform("", "")
    with pytest.raises(InvalidArgument, match=r"m\[0\]: platform.architecture must be a string, not int"):
        Platform.from_json({"os": "linux", "architecture": 1}, "m[0]")
    with pytest.raises(InvalidArgument, match="must be an object"):
        Platform.from_json(["linux"], "m[0]")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("want", "runs"),
    [
        ("linux/amd64", ["linux/amd64", "linux/386"]),
        ("linux/arm64", ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm/v5", ["linux/arm/v5"]),
        ("linux/386", ["linux/386"]),
        ("linux/s390x", ["linux/s390x"]),
    ],
)
def test_compatible_best_first(want: str, runs: list[str]) -> None:
    assert [str(p) for p in compatible(Platform.parse(want))] == runs


def test_rank_orders_candidates_as_compatible_does() -> None:
    want = Platform.parse("linux/arm64")
    candidates = {
        "arm64": {"os": "linux", "architecture": "arm64"},
        "aarch64-v8": {"os": "linux", "architecture": "aarch64", "variant": "v8"},
        "armv7": {"os": "linux", "architecture": "arm", "variant": "v7"},
        "armv6": {"os": "linux", "architecture": "arm", "variant": "v6"},
        "amd64": {"os": "linux", "architecture": "amd64"},
        "windows": {"os": "windows", "architecture": "arm64"},
        "attestation": {"os": "unknown", "architecture": "unknown"},
    }
    ranks = {k: rank(v, want) for k, v in candidates.items()}
    assert ranks == {
        "arm64": 0,
        "aarch64-v8": 0,
        "armv7": 2,
        "armv6": 3,
        "amd64": None,
        "windows": None,
        "attestation": None,
    }


def test_a_descriptor_without_platform_matches_anything() -> None:
    assert rank(None, Platform.parse("linux/s390x")) == 0
    assert rank({}, Platform.parse("linux/amd64")) == 0
