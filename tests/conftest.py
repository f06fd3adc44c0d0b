"""Shared fixtures. Stores are made under pytest's tmp_path on the real file system and kept
small (the root file system here makes new files slow).

Every test that uses ``tmp_path`` must leave nothing mounted below it: ``_no_leaked_mounts``
detaches what is left and fails the test. (A mount left in a temp dir makes pytest's own
clean-up of old temp dirs fail, in a later run, with a ResourceWarning that fails the whole run.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.mount import mountinfo, unmount


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``root`` need mounts, chown and device nodes: skipped unless we are root."""
    needs_root = pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root (mounts, chown, device nodes); run the suite as root"
    )
    for item in items:
        if "root" in item.keywords:
            item.add_marker(needs_root)


@pytest.fixture
def store_dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "root", tmp_path / "state"


@pytest.fixture
def client(store_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE", "CTRSTORE_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    root, state = store_dirs
    c = Client(root=root, state=state)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _no_leaked_mounts(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``tmp_path`` (and its other fixtures' teardown, which runs
    first): any mount still below ``tmp_path`` is detached and the test errors, naming it."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    top: Path = request.getfixturevalue("tmp_path").resolve()
    yield
    leaked = sorted(
        {m.mount_point for m in mountinfo() if m.mount_point.is_relative_to(top)},
        key=lambda p: len(p.parts),
        reverse=True,
    )
    for p in leaked:
        unmount(p, lazy=True)
    if leaked:
        pytest.fail(f"the test left mounts behind: {', '.join(map(str, leaked))}")
