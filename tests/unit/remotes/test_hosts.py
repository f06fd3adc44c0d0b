"""hosts.toml: defaults, mirrors, the directory a registry's file is found in, and the value a
RegistryHost is. (The first two tests moved here from tests/integration/test_remotes.py; the
hostile cases stay in tests/integration/test_hostile_registry.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ctrstore.errdefs import InvalidArgument
from ctrstore.remotes.hosts import RegistryHost, configure_hosts, hosts_file, is_localhost


def test_hosts_defaults(tmp_path: Path) -> None:
    (hub,) = configure_hosts("docker.io", hosts_dir=tmp_path)
    assert hub.base_url == "https://registry-1.docker.io/v2" and not hub.is_mirror
    (local,) = configure_hosts("localhost:5000", hosts_dir=tmp_path)
    assert local.scheme == "https" and local.http_fallback
    (plain,) = configure_hosts("example.com:5000", hosts_dir=tmp_path, plain_http=True)
    assert plain.base_url == "http://example.com:5000/v2"
    (other,) = configure_hosts("example.com", hosts_dir=tmp_path)
    assert other.base_url == "https://example.com/v2" and not other.http_fallback


def test_hosts_toml(tmp_path: Path) -> None:
    d = tmp_path / "example.com_5000_"
    d.mkdir()
    (d / "hosts.toml").write_text(
        """
server = "https://example.com:5000"
capabilities = ["pull", "resolve", "push"]

[host."https://mirror-b.test/base"]
  capabilities = ["pull"]
  ca = "b.pem"
  client = [["c.cert", "c.key"]]
  [host."https://mirror-b.test/base".header]
    x-one = "1"
    x-two = ["a", "b"]

[host."http://mirror-a.test/raw"]
  override_path = true
  skip_verify = true
  dial_timeout = "2s"
"""
    )
    hs = configure_hosts("example.com:5000", hosts_dir=tmp_path)
    assert [h.base_url for h in hs] == [
        "https://mirror-b.test/base/v2",
        "http://mirror-a.test/raw",
        "https://example.com:5000/v2",
    ]
    b, a, srv = hs
    assert b.capabilities == {"pull"} and b.is_mirror
    assert b.ca == [d / "b.pem"] and b.client == [(d / "c.cert", d / "c.key")]
    assert b.headers == {"x-one": "1", "x-two": "a, b"}
    assert a.skip_verify and a.dial_timeout == 2.0 and a.capabilities == {"pull", "push", "resolve"}
    assert not srv.is_mirror and srv.registry == "example.com:5000"

    # host:port beats _default; _default catches the rest.
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text('server = "https://fallback.test"\n')
    (h,) = configure_hosts("other.test", hosts_dir=tmp_path)
    assert h.base_url == "https://fallback.test/v2" and h.is_mirror
    (tmp_path / "bad.test").mkdir()
    (tmp_path / "bad.test" / "hosts.toml").write_text('[host."https://x"]\ncapabilities = ["fly"]\n')
    with pytest.raises(InvalidArgument, match="unknown capabilities"):
        configure_hosts("bad.test", hosts_dir=tmp_path)


def test_registry_host_is_a_value(tmp_path: Path) -> None:
    (local,) = configure_hosts("localhost:5000", hosts_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        local.scheme = "http"  # type: ignore[misc]
    assert local == RegistryHost("localhost:5000", registry="localhost:5000", http_fallback=True)
    assert configure_hosts("localhost:5000", hosts_dir=tmp_path) == [local]


def test_hosts_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("reg.test_5000_", "reg.test:5000", "_default"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "hosts.toml").write_text(f'server = "https://{name.strip("_")}.example"\n')
    assert hosts_file("reg.test:5000", [tmp_path]) == tmp_path / "reg.test_5000_" / "hosts.toml"
    (tmp_path / "reg.test_5000_" / "hosts.toml").unlink()
    assert hosts_file("reg.test:5000", [tmp_path]) == tmp_path / "reg.test:5000" / "hosts.toml"
    assert hosts_file("other.test", [tmp_path]) == tmp_path / "_default" / "hosts.toml"
    assert hosts_file("other.test", [tmp_path / "none"]) is None
    # CTRSTORE_HOSTS_DIR (colon-separated) replaces the default directories.
    monkeypatch.setenv("CTRSTORE_HOSTS_DIR", f"{tmp_path / 'none'}:{tmp_path}")
    (h,) = configure_hosts("other.test")
    assert h.base_url == "https://default.example/v2"


def test_top_level_settings_without_server(tmp_path: Path) -> None:
    """Settings at the top of a file without ``server`` apply to the registry itself; TLS
    settings there turn the loopback default's HTTP fallback off."""
    d = tmp_path / "localhost:5000"
    d.mkdir()
    (d / "hosts.toml").write_text('[header]\nx-a = "1"\n')
    (h,) = configure_hosts("localhost:5000", hosts_dir=tmp_path)
    assert h.headers == {"x-a": "1"} and h.http_fallback and h.base_url == "https://localhost:5000/v2"
    (d / "hosts.toml").write_text("skip_verify = true\n")
    (h,) = configure_hosts("localhost:5000", hosts_dir=tmp_path)
    assert h.skip_verify and not h.http_fallback


def test_docker_hub_mirror_and_ssl_context(tmp_path: Path) -> None:
    d = tmp_path / "docker.io"
    d.mkdir()
    (d / "hosts.toml").write_text(
        '[host."https://mirror.test"]\ncapabilities = ["pull"]\nca = "missing.pem"\n'
    )
    mirror, hub = configure_hosts("docker.io", hosts_dir=tmp_path)
    assert mirror.is_mirror and not hub.is_mirror and hub.host == "registry-1.docker.io"
    assert mirror.can("pull") and not mirror.can("push")
    with pytest.raises(InvalidArgument, match=f"cannot load CA certificate {d / 'missing.pem'}"):
        mirror.ssl_context()
    assert hub.ssl_context().verify_mode.name == "CERT_REQUIRED"


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("0.0.0.0:5000", False),
        ("10.0.0.1", False),
        ("registry.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_localhost(host: str, local: bool) -> None:
    assert is_localhost(host) is local
