"""Helpers for tests that run ``ctrstore serve``: starting it, talking to it, reading what a
registry serves, and a containerd of the test's own (``ctr`` pulls from serve)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.registry import (
    free_port,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def ctrstore(root: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run the CLI on ``root``; returns stdout, fails the test with stderr on an error."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    p = subprocess.run(
        [sys.executable, "-m", "ctrstore", "--root", str(root), "--state", str(root) + "-state", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )
    assert p.returncode == 0, f"ctrstore {' '.join(args)} failed ({p.returncode}):\n{p.stderr}"
    return p.stdout


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    host: str
    """``127.0.0.1:<port>``"""
    scheme: str
    access_log: Path
    stderr: Path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def wait_lines(self, since: int, done: Callable[[list[str]], bool]) -> list[str]:
        """The log's lines after the first ``since``, once ``done`` holds for them (a line is
        written just after its answer, so a client can be a moment ahead); at most 10 s."""
        deadline = time.monotonic() + 10
        while True:
            lines = self.log_lines()[since:]
            if done(lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop it with ``sig``; it must exit 0 within 20 s. Returns its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(f"ctrstore serve did not stop on signal {sig}:\n{self.stderr.read_text()}")
        err = self.stderr.read_text()
        assert self.proc.returncode == 0, f"ctrstore serve exited {self.proc.returncode}:\n{err}"
        return err


def start_serve(root: Path, workdir: Path, *args: str) -> Serve:
    """``ctrstore serve --addr 127.0.0.1:0`` on ``root``; returns once it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(list(workdir.glob("serve-*.err")))
    err, log = workdir / f"serve-{n}.err", workdir / f"serve-{n}.access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    with open(err, "wb") as errf:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "ctrstore", "--root", str(root), "--state", str(root) + "-state",
                "serve", "--addr", "127.0.0.1:0", "--access-log", str(log), *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf,
            env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        m = re.search(r" on (https?)://(127\.0\.0\.1:\d+) ", err.read_text())
        if m:
            return Serve(proc, m.group(2), m.group(1), log, err)
        if proc.poll() is not None:
            pytest.fail(f"ctrstore serve exited {proc.returncode}:\n{err.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            pytest.fail(f"ctrstore serve did not start in 30 s:\n{err.read_text()}")
        time.sleep(0.05)


def request(
    host: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: ``(status, headers, body)``."""
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(host, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def error_code(body: bytes) -> str:
    doc = json.loads(body)
    assert set(doc) == {"errors"} and isinstance(doc["errors"], list), doc
    code: str = doc["errors"][0]["code"]
    assert isinstance(doc["errors"][0]["message"], str)
    return code


def tree(host: str, repo: str, ref: str, query: str = "") -> dict[str, bytes]:
    """Every object of an image as a registry serves it (digest -> bytes), following the index
    to its manifests and their config and layers; each digest checked against its bytes."""
    out: dict[str, bytes] = {}
    accept = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
    status, hdrs, data = request(host, "GET", f"/v2/{repo}/manifests/{ref}{query}", headers=accept)
    assert status == 200, (status, data)
    todo = [(hdrs["docker-content-digest"], data)]
    while todo:
        digest, data = todo.pop()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        out[digest] = data
        doc = json.loads(data)
        kids = [m["digest"] for m in doc.get("manifests", [])]
        for m in kids:
            status, hdrs, body = request(host, "GET", f"/v2/{repo}/manifests/{m}{query}", headers=accept)
            assert status == 200 and hdrs["docker-content-digest"] == m
            todo.append((m, body))
        for blob in [doc["config"]] + doc["layers"] if "config" in doc else []:
            status, hdrs, body = request(host, "GET", f"/v2/{repo}/blobs/{blob['digest']}{query}")
            assert status == 200 and hdrs["docker-content-digest"] == blob["digest"]
            assert "sha256:" + hashlib.sha256(body).hexdigest() == blob["digest"]
            out[blob["digest"]] = body
    return out


def mirror_hosts(workdir: Path, upstream: str, mirror: str, extra: str = "") -> Path:
    """A certs.d dir where ``upstream`` is mirrored by ``mirror`` (pull and resolve) and the
    upstream itself is a closed port: whatever a client gets, it got from the mirror."""
    hd = workdir / "certs.d"
    (hd / upstream).mkdir(parents=True, exist_ok=True)
    (hd / upstream / "hosts.toml").write_text(
        f'server = "http://127.0.0.1:{free_port()}"\n\n'
        f'[host."{mirror}"]\n  capabilities = ["pull", "resolve"]\n{extra}'
    )
    return hd


class Containerd:
    """Debian's containerd with its own root, state, socket and config (as benches/suite.py)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sock = workdir / "containerd.sock"
        self.log = workdir / "containerd.log"
        cfg = workdir / "config.toml"
        disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ]
        cfg.write_text(
            "version = 2\n"
            f'root = "{workdir / "root"}"\n'
            f'state = "{workdir / "state"}"\n'
            f"disabled_plugins = {json.dumps(disabled)}\n"
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            f'[debug]\n  address = "{workdir / "debug.sock"}"\n  level = "warn"\n'
            '[metrics]\n  address = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{workdir / "opt"}"\n'
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.skip(f"containerd does not start here: {self.log.read_text()[-800:]}")
            if self.sock.exists() and self.run("version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                pytest.skip(f"containerd did not answer in 30 s: {self.log.read_text()[-800:]}")
            time.sleep(0.1)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.sock), "-n", "serve-test", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
