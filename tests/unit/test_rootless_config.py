"""A user's defaults follow XDG (issue 13); root keeps /var/lib/ctrstore and /run/ctrstore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctrstore import config
from ctrstore.errdefs import InvalidArgument


def test_user_defaults_follow_xdg() -> None:
    env = {"HOME": "/home/alice", "_CTRSTORE_ROOTLESS_UID": "1000"}
    d = config.user_defaults(env)
    assert (d.root, d.state, d.config_dir) == (
        "/home/alice/.local/share/ctrstore",
        "/tmp/ctrstore-1000",
        "/home/alice/.config/ctrstore",
    )
    env |= {"XDG_DATA_HOME": "/d", "XDG_RUNTIME_DIR": "/run/user/1000", "XDG_CONFIG_HOME": "/c"}
    d = config.user_defaults(env)
    assert (d.root, d.state, str(d.config_path)) == (
        "/d/ctrstore",
        "/run/user/1000/ctrstore",
        "/c/ctrstore/config.toml",
    )


def test_load_as_user_reads_the_users_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_CTRSTORE_ROOTLESS_UID", "1000")
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    cfg = config.load(env=env)
    assert (cfg.root, cfg.state) == (str(tmp_path / ".local/share/ctrstore"), str(tmp_path / "run/ctrstore"))
    (tmp_path / ".config/ctrstore").mkdir(parents=True)
    (tmp_path / ".config/ctrstore/config.toml").write_text('snapshotter = "native"\nroot = "/elsewhere"\n')
    cfg = config.load(env=env)
    assert (cfg.snapshotter, cfg.root, cfg.state) == ("native", "/elsewhere", str(tmp_path / "run/ctrstore"))


@pytest.mark.skipif(os.getuid() != 0, reason="root's defaults are checked as root")
def test_root_keeps_its_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_CTRSTORE_ROOTLESS_UID", raising=False)
    cfg = config.load(env={})
    assert cfg.root == "/var/lib/ctrstore"
    assert cfg.state == "/run/ctrstore"


def test_private_state_dir_refuses_a_shared_one(tmp_path: Path) -> None:
    ok = tmp_path / "mine"
    config.private_dir(str(ok))
    assert ok.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(InvalidArgument, match="not a private directory"):
        config.private_dir(str(shared))
