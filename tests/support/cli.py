"""The ``ctrstore`` command run as a user would (a real process, its exit status and output),
with its root and state under a test's directory, and the check every failing command makes:
one ``ctrstore: <kind>: ...`` line on stderr and no traceback."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ctrstore import Client

__all__ = ["CLI_TIMEOUT", "cli", "one_line_error", "run", "store_client", "store_env", "unique_name"]

CLI_TIMEOUT = 120
"""Seconds any one command may take before the test fails."""


def store_env(store: Path) -> dict[str, str]:
    """This process's environment without ``CTRSTORE_*``, with ``CTRSTORE_ROOT`` and
    ``CTRSTORE_STATE`` under ``store``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    return env | {"CTRSTORE_ROOT": str(store / "root"), "CTRSTORE_STATE": str(store / "state")}


def cli(
    store: Path, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``ctrstore`` with its root and state under ``store`` (and ``store/config.toml`` as
    its config file when it exists); output decoded as UTF-8 (undecodable bytes kept as
    surrogates)."""
    e = store_env(store)
    if (store / "config.toml").exists():
        e["CTRSTORE_CONFIG"] = str(store / "config.toml")
    e |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "ctrstore", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        env=e,
        cwd=cwd,
        timeout=CLI_TIMEOUT,
    )


def run(store: Path, *args: str, stdin: bytes = b"", ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ctrstore`` with its root and state under ``store``, ``stdin`` as its input;
    input and output as latin-1 (so any bytes pass through unchanged). ``ok``: assert it
    exited 0."""
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore", *args],
        input=stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        env=store_env(store),
        encoding="latin-1",
        timeout=CLI_TIMEOUT,
    )
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def one_line_error(r: subprocess.CompletedProcess[str], kind: str, *fragments: str) -> str:
    """Assert the command failed with exactly one ``ctrstore: <kind>: ...`` line on stderr
    (no traceback, no raw control character) containing every fragment; returns the line."""
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith(f"ctrstore: {kind}: "), line
    assert all(c.isprintable() for c in line), repr(line)
    for f in fragments:
        assert f in line, (f, line)
    return line


def store_client(store: Path, **kw: Any) -> Client:
    """A ``Client`` on the store under ``store`` (``CTRSTORE_*`` cleared from the environment,
    so no variable points it elsewhere)."""
    for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE", "CTRSTORE_NAMESPACE"):
        os.environ.pop(var, None)
    return Client(root=store / "root", state=store / "state", **kw)


def unique_name(prefix: str) -> str:
    """A container name or id no other test uses: cgroups (``/<ns>/<id>``) are shared by every
    store on this machine."""
    return f"{prefix}-{secrets.token_hex(3)}"
