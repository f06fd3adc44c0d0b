"""One table of machine names: the platform the plugins report (``plugin ls``) is the one
images are matched against (``ctrstore.images.platforms.host``), on every machine."""

from __future__ import annotations

import platform

import pytest

from ctrstore.images.platforms import host
from ctrstore.plugins.snapshots import host_platform


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64"),
        ("armv7l", "linux/arm/v7"),
        ("i686", "linux/386"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_plugins_report_the_platform_images_are_matched_against(
    monkeypatch: pytest.MonkeyPatch, machine: str, expected: str
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert str(host()) == expected
    assert host_platform() == expected
