"""Shared fixtures. Stores are made under pytest's tmp_path on the real file system and kept
small (the root file system here makes new files slow).

Every test that uses ``tmp_path`` must leave nothing mounted below it: ``_no_leaked_mounts``
detaches what is left and fails the test. (A mount left in a temp dir makes pytest's own
clean-up of old temp dirs fail, in a later run, with a ResourceWarning that fails the whole run.)

Containers put on the default network (``bridge``, what ``ctrstore run`` gives unasked) are on a
network of the session (``_session_network``): ``NETCONFPATH`` points at a conflist directory
of its own, whose ``bridge`` has a bridge and subnet of its own, removed at the end. No test
touches the machine's ``ctrstore0``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.mount import mountinfo, unmount
from tests.support.network import cni_available, make_test_network, remove_test_network

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``root`` need mounts, chown and device nodes: skipped unless we are root."""
    needs_root = pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root (mounts, chown, device nodes); run the suite as root"
    )
    for item in items:
        if "root" in item.keywords:
            item.add_marker(needs_root)


@pytest.fixture(scope="session", autouse=True)
def _session_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default network of this session's containers (see the module's docstring). The
    bridge plugin turns IP forwarding on for a gateway; if it was off, it is turned off again."""
    if os.geteuid() != 0 or cni_available() is not None:
        yield
        return
    forward = IP_FORWARD.read_text().strip() if IP_FORWARD.exists() else ""
    tn = make_test_network(tmp_path_factory.mktemp("session-network"))
    old = os.environ.get("NETCONFPATH")
    os.environ["NETCONFPATH"] = str(tn.conf_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("NETCONFPATH", None)
        else:
            os.environ["NETCONFPATH"] = old
        remove_test_network(tn)
        if forward == "0":
            IP_FORWARD.write_text("0\n")


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
