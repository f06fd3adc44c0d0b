"""Fixtures for integration tests: real registries (Debian's ``docker-registry``, i.e.
distribution 2.8) started once per session on free loopback ports.

- ``registry``: plain HTTP, no authentication, on ``127.0.0.1:<port>``. A reference such as
  ``f"{registry.host}/team/app:1"`` works with a default ``Resolver()`` (loopback with a port:
  HTTPS is tried, then plain HTTP) or ``Resolver(plain_http=True)``.
- ``auth_registry``: HTTPS with a self-signed certificate and htpasswd (Basic) authentication,
  user ``registry.username`` / ``registry.password``. ``registry.hosts_dir`` is a certs.d
  directory whose hosts.toml trusts the certificate (``Resolver(hosts_dir=...)``).

``start_registry``/``stop_registry`` start more (e.g. for a demo).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
REGISTRY_USER = "alice"
REGISTRY_PASSWORD = "s3cret"
#: bcrypt (cost 4, so checks are quick) of REGISTRY_PASSWORD; made with
#: ``python -c "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"``
REGISTRY_HTPASSWD = f"{REGISTRY_USER}:$2b$04$kiVeV8veSL/7UL8dTQ8QoOH1grEgRVTeBP0AEcId1qCQzx4Ibqe8m\n"


@dataclass
class RegistryServer:
    host: str
    """``127.0.0.1:<port>``"""
    scheme: str
    workdir: Path
    proc: subprocess.Popen[bytes]
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    """The self-signed certificate (TLS registries)."""
    hosts_dir: Path | None = None
    """A certs.d directory with ``<host>/hosts.toml`` trusting ``ca`` (TLS registries)."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def ref(self, path: str) -> str:
        return f"{self.host}/{path}"

    def log(self) -> str:
        try:
            return (self.workdir / "registry.log").read_text()[-4000:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _make_cert(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def start_registry(workdir: Path, *, auth: bool = False, tls: bool = False) -> RegistryServer:
    """Start a registry storing under ``workdir``; returns when ``/v2/`` answers."""
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install -y docker-registry")
    if tls and not shutil.which("openssl"):
        pytest.skip("openssl missing (needed for the TLS registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {workdir / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {host}",
        "  secret: ctrstore-test-secret",
    ]
    srv_ca: Path | None = None
    if tls:
        cert, key = _make_cert(workdir)
        srv_ca = cert
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
    if auth:
        (workdir / "htpasswd").write_text(REGISTRY_HTPASSWD)
        lines += ["auth:", "  htpasswd:", "    realm: ctrstore-test", f"    path: {workdir / 'htpasswd'}"]
    (workdir / "config.yml").write_text("\n".join(lines) + "\n")
    logf = open(workdir / "registry.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(workdir / "config.yml")], stdout=logf, stderr=subprocess.STDOUT
    )
    logf.close()
    srv = RegistryServer(
        host,
        "https" if tls else "http",
        workdir,
        proc,
        username=REGISTRY_USER if auth else None,
        password=REGISTRY_PASSWORD if auth else None,
        ca=srv_ca,
    )
    if tls and srv_ca is not None:
        hd = workdir / "certs.d"
        (hd / host).mkdir(parents=True)
        shutil.copy(srv_ca, hd / host / "ca.pem")
        (hd / host / "hosts.toml").write_text(f'server = "https://{host}"\nca = "ca.pem"\n')
        srv.hosts_dir = hd
    try:
        _wait_ready(srv)
    except BaseException:
        stop_registry(srv)
        raise
    return srv


def _wait_ready(srv: RegistryServer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {srv.proc.returncode}:\n{srv.log()}")
        conn: http.client.HTTPConnection
        if srv.scheme == "https":
            ctx = ssl.create_default_context(cafile=str(srv.ca))
            conn = http.client.HTTPSConnection(srv.host, timeout=2, context=ctx)
        else:
            conn = http.client.HTTPConnection(srv.host, timeout=2)
        try:
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            if status in (200, 401):
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"docker-registry on {srv.host} did not answer in {timeout}s:\n{srv.log()}")
        time.sleep(0.05)


def stop_registry(srv: RegistryServer) -> None:
    if srv.proc.poll() is None:
        srv.proc.terminate()
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    srv = start_registry(tmp_path_factory.mktemp("registry"))
    yield srv
    stop_registry(srv)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    srv = start_registry(tmp_path_factory.mktemp("auth-registry"), auth=True, tls=True)
    yield srv
    stop_registry(srv)
