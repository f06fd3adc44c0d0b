"""Names, terminal output, store locations and permissions:

- image names are references (tag, import, commit, the API), as ``ctr`` requires;
- stored strings with control characters are printed escaped, never raw;
- an empty ``--root``/``--state`` (or ``CTRSTORE_ROOT``/``CTRSTORE_STATE``) is an error;
- a store directory the user may not read is one ``permission denied`` line naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctrstore import Client, Info, InvalidArgument, PermissionDenied
from ctrstore.images.build import Entry, build_image, tar_from_entries
from ctrstore.metadata.images import Image
from tests.support.cli import cli, one_line_error, store_client
from tests.support.crafted import files_outside

BAD_NAMES = [
    "example.com/app:1\nevil",
    "example.com/app\r:1",
    "example.com/my app:1",
    "example.com/app\x1b[2J:1",
    "example.com/a/../b:1",
    "example.com/../b:1",
    "example.com/App:1",
    "example.com/" + "a" * 600,
    "example.com/a:" + "t" * 129,
    "example.com/a:1\u202e",
    "",
]


def _image(store: Path, name: str = "example.com/app:1", **labels: str) -> None:
    c = store_client(store)
    try:
        img = build_image(c.content, c.images, name, [tar_from_entries([Entry("f", data=b"x")])])
        if labels:
            c.images.set_labels(img.name, labels)
    finally:
        c.close()


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_image_names_must_be_references(tmp_path: Path, name: str) -> None:
    store = tmp_path / "store"
    _image(store)
    r = cli(store, "images", "tag", "example.com/app:1", name)
    one_line_error(r, "invalid argument", "image name")
    r = cli(store, "commit", "no-such-container", name)
    one_line_error(r, "invalid argument", "image name")  # refused before anything is looked up
    c = store_client(store)
    try:
        target = c.images.get("example.com/app:1").target
        with pytest.raises(InvalidArgument, match="image name"):
            c.images.create(Image(name, target))
        assert [i.name for i in c.images.list()] == ["example.com/app:1"]
    finally:
        c.close()


def test_good_names_still_work(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _image(store)
    names = ["app", "app:1", "localhost:5000/team/app:v1.2-rc_3", "example.com/a/b/c@sha256:" + "a" * 64]
    r = cli(store, "images", "tag", "example.com/app:1", *names)
    assert r.returncode == 0, r.stderr
    c = store_client(store)
    try:
        # Stored normalised, as a pull names images (docker's and nerdctl's tag): run app:1
        # finds it as it finds a pulled one.
        normalised = ["docker.io/library/app:latest", "docker.io/library/app:1", *names[2:]]
        assert {i.name for i in c.images.list()} == {"example.com/app:1", *normalised}
        assert c.images.lookup("app").name == "docker.io/library/app:latest"
    finally:
        c.close()


# -- terminal output -------------------------------------------------------------------------------
EVIL = "red\x1b[31m\x07bell\rcr\nnl\u202erev\x9bcsi\x7fdel"


def _raw_controls(text: str) -> list[str]:
    return [c for line in text.splitlines() for c in line if not c.isprintable()]


def test_control_characters_are_escaped(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _image(store, evil=EVIL)
    c = store_client(store)
    try:
        blob = next(iter(c.content.walk())).digest
        c.content.update(Info(blob, labels={"note": EVIL}), "labels.note")
        c.namespaces.set_labels("default", {"evil": EVIL})
        c.leases.create(id="l1", labels={"evil": EVIL})
        sn = c.snapshotter("native")
        sn.prepare(f"key{EVIL}", "")
    finally:
        c.close()
    outputs = {
        "images ls": cli(store, "images", "ls", "--format", "{{.Name}} {{.Labels}}"),
        "content ls": cli(store, "content", "ls"),
        "namespaces ls": cli(store, "namespaces", "ls"),
        "leases ls": cli(store, "leases", "ls"),
        "snapshots ls": cli(store, "snapshots", "--snapshotter", "native", "ls"),
        "snapshots tree": cli(store, "snapshots", "--snapshotter", "native", "tree"),
        "images label": cli(store, "images", "label", "example.com/app:1", "x=1"),
        "gc --dry-run": cli(store, "gc", "--dry-run"),
    }
    for what, r in outputs.items():
        assert r.returncode == 0, (what, r.stderr)
        assert _raw_controls(r.stdout) == [], (what, r.stdout)
        if what not in ("gc --dry-run",):
            assert "red\\x1b[31m\\x07bell\\rcr\\nnl\\u202erev\\x9bcsi\\x7fdel" in r.stdout, (what, r.stdout)
    # An error message naming a key is one escaped line too.
    r = cli(store, "snapshots", "--snapshotter", "native", "rm", f"nokey{EVIL}")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert _raw_controls(r.stderr) == [], r.stderr


# -- --root '' and friends ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,env,fragment",
    [
        (["--root", ""], {}, "root (--root) is empty"),
        (["--root", "  "], {}, "root (--root) is empty"),
        (["--state", ""], {}, "state (--state) is empty"),
        ([], {"CTRSTORE_ROOT": ""}, "CTRSTORE_ROOT is empty"),
        ([], {"CTRSTORE_STATE": ""}, "CTRSTORE_STATE is empty"),
    ],
)
def test_empty_root_or_state_is_an_error(
    tmp_path: Path, args: list[str], env: dict[str, str], fragment: str
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    store = tmp_path / "store"
    before = files_outside(tmp_path, store)
    for cmd in (["images", "ls"], ["content", "ingest", "r"], ["pull", "127.0.0.1:1/x:1"]):
        r = cli(store, *args, *cmd, env=env, cwd=cwd)
        one_line_error(r, "invalid argument", fragment)
    assert files_outside(tmp_path, store) == before
    assert not store.exists()


def test_empty_root_through_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(InvalidArgument, match="root"):
        Client(root="", state=tmp_path / "s")
    with pytest.raises(InvalidArgument, match="state"):
        Client(root=tmp_path / "r", state="")
    monkeypatch.setenv("CTRSTORE_ROOT", "")
    with pytest.raises(InvalidArgument, match="CTRSTORE_ROOT"):
        Client(state=tmp_path / "s")
    assert sorted(os.listdir(tmp_path)) == []


# -- permissions -----------------------------------------------------------------------------------
CAPSH = shutil.which("capsh")


def _without_dac(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as root without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER, so
    file modes apply (capsh keeps the venv under /root readable, which setpriv --reuid would
    not)."""
    assert CAPSH is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    env |= {"CTRSTORE_ROOT": str(store / "root"), "CTRSTORE_STATE": str(store / "state")}
    cmd = " ".join(["exec", sys.executable, "-m", "ctrstore", *(f"'{a}'" for a in args)])
    return subprocess.run(
        [CAPSH, "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", cmd],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.root
@pytest.mark.skipif(CAPSH is None, reason="capsh (libcap2-bin) is not installed")
def test_unreadable_store_is_one_permission_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _image(store)
    content_dir = store / "root" / "io.containerd.content.v1.content"
    blobs = content_dir / "blobs" / "sha256"
    digest = "sha256:" + sorted(os.listdir(blobs))[0]
    r = _without_dac(store, "images", "ls", "--format", "{{.Name}}")
    assert r.returncode == 0 and "example.com/app:1" in r.stdout, r.stderr  # modes still allow it
    try:
        blobs.chmod(0)
        for args in (
            ["images", "unpack", "example.com/app:1"],
            ["images", "export", str(tmp_path / "out.tar"), "example.com/app:1"],
            ["content", "get", digest],
            ["gc"],
        ):
            r = _without_dac(store, *args)
            one_line_error(r, "permission denied", str(blobs))
        (content_dir / "blobs").chmod(0)
        r = _without_dac(store, "images", "ls")
        one_line_error(r, "permission denied", str(content_dir / "blobs"))
        # The API raises PermissionDenied as well (run in a process without the capabilities).
        code = (
            "from ctrstore import Client, PermissionDenied\n"
            "try:\n    Client().images.list()\n"
            "except PermissionDenied as e:\n    print('PermissionDenied', e)\n"
        )
        assert CAPSH is not None
        env = {**os.environ, "CTRSTORE_ROOT": str(store / "root"), "CTRSTORE_STATE": str(store / "state")}
        out = subprocess.run(
            [CAPSH, "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c",
             f"exec {sys.executable} -c \"{code}\""],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert out.stdout.startswith("PermissionDenied"), out.stderr
    finally:
        (content_dir / "blobs").chmod(0o755)
        blobs.chmod(0o755)
    assert PermissionDenied.kind == "permission denied"
