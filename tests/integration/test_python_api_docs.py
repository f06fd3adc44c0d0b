"""docs/python-api.md's examples run as written: every ```python block, in order, as one
session (one globals dict), against a real registry serving a busybox image, a store of the
test's own and runc. README.md's Python example runs too, with its image and store paths
pointed at the test's.

The guide reads its image from ``$IMAGE`` and its store from ``$CTRSTORE_ROOT``,
``$CTRSTORE_STATE`` and ``$CTRSTORE_NAMESPACE``; the test sets them (a namespace of its own,
as cgroups ``/<namespace>/<id>`` are shared by every store on this machine). A block that
fails names its line in the guide (each is compiled under the guide's file name, at its own
line).
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from ctrstore import Client, NotFound
from ctrstore.mount import mountinfo, unmount
from tests.support.images import BUSYBOX, busybox_image
from tests.support.registry import RegistryServer

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
README = Path(__file__).resolve().parents[2] / "README.md"
README_IMAGE = "127.0.0.1:5000/team/app:1"
README_STORE = "/tmp/store"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Every ```python block of a Markdown text: (line of its first line of code, code)."""
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M):
        blocks.append((text.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return blocks


def test_python_blocks_are_found() -> None:
    text = "intro\n```python\na = 1\n```\n\n```sh\nls\n```\n```python\nb = 2\nc = 3\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n"), (10, "b = 2\nc = 3\n")]


@pytest.fixture
def guide_env(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """A busybox image pushed to the session's registry, and the environment the guide reads;
    afterwards its containers are removed and nothing stays mounted."""
    image = registry.ref(f"docs/busybox-{secrets.token_hex(3)}:latest")
    with Client(root=tmp_path / "src" / "root", state=tmp_path / "src" / "state") as src:
        busybox_image(src.content, src.images, BUSYBOX)
        src.push(BUSYBOX, image)
    env = {
        "IMAGE": image,
        "CTRSTORE_ROOT": str(tmp_path / "root"),
        "CTRSTORE_STATE": str(tmp_path / "state"),
        "CTRSTORE_NAMESPACE": f"docs-{secrets.token_hex(3)}",
    }
    monkeypatch.delenv("CTRSTORE_CONFIG", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env
    with Client() as c, suppress(NotFound):  # (no namespace: nothing was made in it)
        for ctr in c.containers.store.list():
            with suppress(Exception):
                c.containers.delete(ctr.id, force=True)
    for m in sorted(
        (m.mount_point for m in mountinfo() if m.mount_point.is_relative_to(tmp_path)),
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        with suppress(Exception):
            unmount(m)


@pytest.mark.timeout(600)
def test_the_guide_runs(guide_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) >= 15, "the guide lost its examples"
    session: dict[str, object] = {"__name__": "__guide__"}
    for line, code in blocks:
        exec(compile("\n" * (line - 1) + code, str(GUIDE), "exec"), session)
    # The last block tidies up: the namespace is empty again.
    with Client() as c:
        assert c.images.list() == []
        assert c.containers.list(all=True) == []
    out = capsys.readouterr().out
    assert "is closed" in out and "no such container: no-such-container" in out
    assert "executable file not found" in out


def test_the_readme_example_runs(
    guide_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (code,) = [c for _, c in python_blocks(README.read_text()) if "Client(" in c]
    assert README_IMAGE in code and README_STORE in code
    code = code.replace(README_IMAGE, guide_env["IMAGE"]).replace(README_STORE, str(tmp_path / "readme"))
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.splitlines() == ["0 b'hello\\n' b''", "b'web\\n' running"]
    with Client(root=tmp_path / "readme" / "root", state=tmp_path / "readme" / "state") as c:
        assert c.images.list() == [] and c.containers.list(all=True) == []
