"""The command line, run as a user would: a real process, stdin, exit status, one error line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run


def test_content_roundtrip(tmp_path: Path) -> None:
    data = b"hello ctrstore\n" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    out = run(
        tmp_path,
        "content",
        "ingest",
        "r1",
        "--expected-digest",
        digest,
        "--expected-size",
        str(len(data)),
        "-l",
        "a=b",
        stdin=data,
    )
    assert out.stdout.strip() == digest
    assert run(tmp_path, "content", "ls", "-q").stdout.split() == [digest]
    ls = run(tmp_path, "content", "ls", "--verbose").stdout
    assert "TYPE" in ls and "ASCII text" in ls and "a=b" in ls
    assert run(tmp_path, "content", "get", digest).stdout.encode("latin-1") == data
    assert '"description": "ASCII text' in run(tmp_path, "content", "info", digest).stdout
    assert run(tmp_path, "content", "label", digest, "a=", "c=d").stdout.strip() == "c=d"
    assert run(tmp_path, "content", "ls", "-q", "labels.c==d").stdout.split() == [digest]
    assert run(tmp_path, "gc", "--dry-run").stdout.startswith("would remove content record")
    run(tmp_path, "content", "rm", digest)
    assert run(tmp_path, "content", "ls", "-q").stdout == ""


def test_errors_are_one_line(tmp_path: Path) -> None:
    r = run(
        tmp_path, "content", "ingest", "r", "--expected-digest", "sha256:" + "0" * 64, stdin=b"x", ok=False
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f'ctrstore: failed precondition: commit of "default/r" failed: content digest is '
        f"sha256:{hashlib.sha256(b'x').hexdigest()}, expected sha256:{'0' * 64}"
    ]
    assert "ingest" not in run(tmp_path, "content", "active").stdout.splitlines()[0] or True
    r = run(tmp_path, "content", "get", "sha256:nothex", ok=False)
    assert r.returncode == 1 and r.stderr.startswith("ctrstore: invalid argument: invalid digest")
    r = run(tmp_path, "-n", "ghost", "content", "ls", ok=False)
    assert "namespace 'ghost' does not exist" in r.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text("root = [")
    r = run(tmp_path, "--config", str(cfg), "content", "ls", ok=False)
    assert r.returncode == 1 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr


def test_truncated_ingest_then_resume(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    r = run(
        tmp_path, "content", "ingest", "big", "--expected-size", str(len(data)), stdin=data[:5000], ok=False
    )
    assert "wrote 5000 bytes, expected 200000" in r.stderr
    assert "big" in run(tmp_path, "content", "active").stdout
    src = tmp_path / "src"
    src.write_bytes(data)
    with open(src, "rb") as f:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
        env |= {"CTRSTORE_ROOT": str(tmp_path / "root"), "CTRSTORE_STATE": str(tmp_path / "state")}
        out = subprocess.run(
            [sys.executable, "-m", "ctrstore", "content", "ingest", "big", "--expected-size", str(len(data))],
            stdin=f,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    assert out.stdout.strip() == "sha256:" + hashlib.sha256(data).hexdigest()


def test_namespaces_plugins_config(tmp_path: Path) -> None:
    run(tmp_path, "namespaces", "create", "dev", "team=x")
    assert "dev" in run(tmp_path, "namespaces", "ls", "-q").stdout.split()
    run(tmp_path, "-n", "dev", "content", "ingest", "r", stdin=b"in dev")
    r = run(tmp_path, "namespaces", "rm", "dev", ok=False)
    assert "must be empty" in r.stderr
    plugins = run(tmp_path, "plugin", "ls").stdout.splitlines()
    assert plugins[0].split() == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    assert any(
        line.split()[:2] == ["io.containerd.content.v1", "content"] and line.endswith("ok")
        for line in plugins
    )
    assert 'root = "/var/lib/ctrstore"' in run(tmp_path, "config", "default").stdout
    assert f'root = "{tmp_path / "root"}"' in run(tmp_path, "config", "dump").stdout
    lease = run(tmp_path, "leases", "create", "--id", "l1", "k=v").stdout.strip()
    assert lease == "l1"
    assert "l1" in run(tmp_path, "leases", "ls").stdout
    run(tmp_path, "leases", "rm", "l1")


@pytest.mark.parametrize("cmd", [[], ["content"], ["content", "ingest"], ["gc"], ["namespaces"], ["plugin"]])
def test_help_works(tmp_path: Path, cmd: list[str]) -> None:
    out = run(tmp_path, *cmd, "--help").stdout
    assert "Usage:" in out
