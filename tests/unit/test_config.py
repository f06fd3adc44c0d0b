from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ctrstore import InvalidArgument
from ctrstore.config import Config, load, parse


def test_defaults_and_roundtrip() -> None:
    import ctrstore.plugins.builtins  # noqa: F401

    text = Config().to_toml()
    doc = tomllib.loads(text)
    assert doc["root"] == "/var/lib/ctrstore"
    assert doc["state"] == "/run/ctrstore"
    assert doc["plugins"]["io.containerd.metadata.v1.sqlite"]["content_sharing_policy"] == "shared"
    assert parse(text).root == "/var/lib/ctrstore"


def test_precedence(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text('root = "/from/file"\nstate = "/state/file"\n')
    env = {"CTRSTORE_CONFIG": str(f), "CTRSTORE_ROOT": "/from/env"}
    cfg = load(env=env)
    assert (cfg.root, cfg.state) == ("/from/env", "/state/file")
    assert load(env=env, root="/from/flag").root == "/from/flag"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("root = ", "not valid TOML"),
        ('rooot = "/x"', "unknown key"),
        ("root = 3", "root must be"),
        ("version = 9", "version 9"),
        ('disabled_plugins = "x"', "disabled_plugins"),
        ("plugins = 1", "plugins must be tables"),
    ],
)
def test_bad_config_is_named(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(InvalidArgument, match=message) as ei:
        load(f, env={})
    assert str(f) in str(ei.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        load(tmp_path / "nope.toml", env={})
