"""Things spelled in one place only (issue #10): the table of machine names, every
well-known label key, and the shape of ``update``."""

from __future__ import annotations

import ast
import inspect
import platform
from pathlib import Path

import pytest

import ctrstore
from ctrstore.images.platforms import host
from ctrstore.metadata.containers import ContainerStore
from ctrstore.metadata.content import ContentStore
from ctrstore.metadata.images import ImageStore
from ctrstore.metadata.snapshots import SnapshotStore
from ctrstore.plugins.snapshots import host_platform
from ctrstore.snapshots._base import DirectorySnapshotter

PACKAGE = Path(ctrstore.__file__).parent


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


def test_label_keys_are_spelled_only_in_labels_py() -> None:
    """A well-known label key (``containerd.io/...``, ``ctrstore.io/...``, ``nerdctl/...``) is
    a constant of ``ctrstore.labels``; elsewhere it is imported, never written out again
    (docstrings and filter expressions that quote one aside)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "labels.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.startswith(("containerd.io/", "ctrstore.io/", "nerdctl/"))
                and id(node) not in docstrings
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not found, "label keys outside ctrstore/labels.py:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "cls",
    [ContentStore, ImageStore, SnapshotStore, ContainerStore, DirectorySnapshotter],
    ids=lambda c: c.__name__,
)
def test_every_store_updates_as_update_obj_fieldpaths(cls: type) -> None:
    """One ``update(obj, *fieldpaths)``, as containerd's stores have: the object carries the
    new values, the field paths say which of them to take."""
    update = getattr(cls, "update")  # noqa: B009  (cls is any of several classes)
    params = list(inspect.signature(update).parameters.values())
    assert [p.kind for p in params] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    ], f"{cls.__name__}.update{inspect.signature(update)}"
