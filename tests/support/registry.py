"""Real registries for tests, benches and the demo: Debian's ``docker-registry`` (distribution
2.8) on a free loopback port, plain HTTP, HTTPS with htpasswd (Basic) authentication, or token
(Bearer) authentication by :class:`TokenServer`, a small token server in a thread.

``start_registry``/``stop_registry`` and ``start_token_server`` are what the session fixtures
of ``tests/integration/conftest.py`` use; a missing tool raises :class:`ToolMissing` (the
fixtures turn it into a skip). As a program, it serves one plain registry until it is stopped::

    python -m tests.support.registry DIR     # prints 127.0.0.1:<port> once /v2/ answers
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "REGISTRY_HTPASSWD",
    "REGISTRY_PASSWORD",
    "REGISTRY_USER",
    "TOKEN_PASSWORD",
    "TOKEN_USER",
    "RegistryServer",
    "TokenRequest",
    "TokenServer",
    "ToolMissing",
    "free_port",
    "libtrust_key_id",
    "make_cert",
    "start_registry",
    "start_token_server",
    "stop_registry",
]


class ToolMissing(RuntimeError):
    """A program a registry needs (docker-registry, openssl) is not installed."""


REGISTRY_BIN = "/usr/bin/docker-registry"
REGISTRY_USER = "alice"
REGISTRY_PASSWORD = "s3cret"
#: bcrypt (cost 4, so checks are quick) of REGISTRY_PASSWORD; made with
#: ``python -c "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"``
REGISTRY_HTPASSWD = f"{REGISTRY_USER}:$2b$04$kiVeV8veSL/7UL8dTQ8QoOH1grEgRVTeBP0AEcId1qCQzx4Ibqe8m\n"
TOKEN_USER = "bob"
TOKEN_PASSWORD = "t0ken"
TOKEN_SERVICE = "ctrstore-test"
TOKEN_ISSUER = "ctrstore-test-issuer"
TOKEN_TTL = 300


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
    token_server: TokenServer | None = None
    """The token server whose tokens the registry accepts (token registries)."""
    data: Path | None = None
    """The storage directory."""

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

    def log_size(self) -> int:
        """Bytes of ``registry.log`` so far (a mark for :meth:`sent_since`)."""
        try:
            return (self.workdir / "registry.log").stat().st_size
        except OSError:
            return 0

    def sent_since(self, offset: int) -> int:
        """Body bytes of the GETs in the access log (``access_log=True``) after byte ``offset``
        of the log (its lines are written as each answer ends)."""
        with open(self.workdir / "registry.log", "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return sum(int(n) for n in re.findall(r'"GET \S+ HTTP/[\d.]+" \d{3} (\d+)', text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key, under ``workdir``."""
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


def start_registry(
    workdir: Path,
    *,
    auth: bool = False,
    tls: bool = False,
    token: TokenServer | None = None,
    data: Path | None = None,
    access_log: bool = False,
) -> RegistryServer:
    """Start a registry storing under ``workdir``; returns when ``/v2/`` answers. ``auth``:
    htpasswd (Basic) authentication; ``token``: token authentication by that server; ``data``:
    the storage directory (default ``workdir/data``; two registries may share one to serve the
    same images); ``access_log``: log every request, with the bytes sent, to ``registry.log``
    (see :meth:`RegistryServer.sent_since`)."""
    if auth and token is not None:
        raise ValueError("start_registry: auth (htpasswd) and token are exclusive")
    if not os.path.exists(REGISTRY_BIN):
        raise ToolMissing(f"{REGISTRY_BIN} missing: apt-get install -y docker-registry")
    if tls and not shutil.which("openssl"):
        raise ToolMissing("openssl missing (needed for the TLS registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        f"    disabled: {'false' if access_log else 'true'}",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {data or workdir / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {host}",
        "  secret: ctrstore-test-secret",
    ]
    srv_ca: Path | None = None
    if tls:
        cert, key = make_cert(workdir)
        srv_ca = cert
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
    if auth:
        (workdir / "htpasswd").write_text(REGISTRY_HTPASSWD)
        lines += ["auth:", "  htpasswd:", "    realm: ctrstore-test", f"    path: {workdir / 'htpasswd'}"]
    if token is not None:
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token.realm}",
            f"    service: {TOKEN_SERVICE}",
            f"    issuer: {TOKEN_ISSUER}",
            f"    rootcertbundle: {token.cert}",
        ]
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
        username=REGISTRY_USER if auth else TOKEN_USER if token else None,
        password=REGISTRY_PASSWORD if auth else TOKEN_PASSWORD if token else None,
        ca=srv_ca,
        token_server=token,
        data=data or workdir / "data",
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


# -- a token server for the token registry ---------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(spki_der: bytes) -> str:
    """docker/libtrust's key ID of a public key (what distribution matches a JWT ``kid``
    against): base32 of the first 240 bits of the SHA-256 of its DER SubjectPublicKeyInfo,
    in 12 groups of 4 characters joined by ``:``."""
    b32 = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass
class TokenRequest:
    method: str
    user: str | None
    """The authenticated user; None for an anonymous request."""
    service: str
    scopes: list[str]
    status: int
    grant_type: str = ""
    client_id: str = ""


@dataclass
class TokenServer:
    """A Docker token server (``docker/distribution`` token auth spec) on ``127.0.0.1``: GET
    ``?service=..&scope=..`` with optional Basic credentials, or POST of an OAuth2 form with
    ``grant_type=password``. Tokens are RS256 JWTs signed with ``openssl``."""

    workdir: Path
    httpd: http.server.ThreadingHTTPServer
    thread: threading.Thread
    key: Path
    cert: Path
    """The self-signed certificate of the signing key: the registry's ``rootcertbundle``."""
    kid: str
    allow_post: bool = True
    """False: answer POSTs 405, as token servers without OAuth2 support do (GET only)."""
    requests: list[TokenRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def realm(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/token"

    def mark(self) -> int:
        """A position in ``requests``, for ``since``."""
        with self.lock:
            return len(self.requests)

    def since(self, mark: int) -> list[TokenRequest]:
        with self.lock:
            return list(self.requests[mark:])

    def _record(self, req: TokenRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def issue(self, user: str | None, scopes: list[str]) -> str:
        """A signed JWT for ``user``, granting ``scopes`` to TOKEN_USER and nothing to others."""
        access: dict[tuple[str, str], list[str]] = {}
        if user == TOKEN_USER:
            for scope in scopes:
                typ, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                if not typ or not name:
                    continue
                acts = access.setdefault((typ, name), [])
                acts += [a for a in actions.split(",") if a and a not in acts]
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user or "",
            "aud": TOKEN_SERVICE,
            "exp": now + TOKEN_TTL,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [{"type": t, "name": n, "actions": a} for (t, n), a in access.items()],
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def _scopes(values: list[str]) -> list[str]:
    return [s for v in values for s in v.split()]


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    server: _TokenHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, doc: dict[str, Any], req: TokenRequest | None) -> None:
        if req is not None:
            req.status = status
            self.server.tokens._record(req)
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="ctrstore-test-token"')
        self.end_headers()
        self.wfile.write(body)

    def _grant(self, req: TokenRequest) -> None:
        if req.service != TOKEN_SERVICE:
            self._reply(400, {"error": "invalid_request", "details": f"unknown service {req.service!r}"}, req)
            return
        token = self.server.tokens.issue(req.user, req.scopes)
        self._reply(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_TTL,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            req,
        )

    def do_GET(self) -> None:
        u = urlsplit(self.path)
        if u.path != "/token":
            self._reply(404, {"error": "not found"}, None)
            return
        q = parse_qs(u.query)
        req = TokenRequest("GET", None, q.get("service", [""])[0], _scopes(q.get("scope", [])), 0)
        authz = self.headers.get("Authorization", "")
        if authz:
            scheme, _, value = authz.partition(" ")
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if scheme.lower() != "basic" or (user, password) != (TOKEN_USER, TOKEN_PASSWORD):
                req.user = user or None
                self._reply(401, {"error": "invalid credentials"}, req)
                return
            req.user = user
        self._grant(req)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        if urlsplit(self.path).path != "/token":
            self._reply(404, {"error": "not found"}, None)
            return

        def one(k: str) -> str:
            return form.get(k, [""])[0]

        req = TokenRequest(
            "POST",
            one("username") or None,
            one("service"),
            _scopes(form.get("scope", [])),
            0,
            grant_type=one("grant_type"),
            client_id=one("client_id"),
        )
        if not self.server.tokens.allow_post:
            self._reply(405, {"error": "method not allowed"}, req)
            return
        if req.grant_type != "password":
            self._reply(400, {"error": "unsupported_grant_type"}, req)
            return
        if (one("username"), one("password")) != (TOKEN_USER, TOKEN_PASSWORD):
            self._reply(401, {"error": "invalid_grant"}, req)
            return
        self._grant(req)


class _TokenHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tokens: TokenServer


def start_token_server(workdir: Path) -> TokenServer:
    """Make a signing key and certificate under ``workdir`` and serve tokens on a free port."""
    if not shutil.which("openssl"):
        raise ToolMissing("openssl missing (needed to sign registry tokens)")
    workdir.mkdir(parents=True, exist_ok=True)
    key, cert = workdir / "token-key.pem", workdir / "token-cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", "2", "-subj", "/CN=ctrstore-test-token-signer",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    spki = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"], check=True, capture_output=True
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki, check=True, capture_output=True
    ).stdout
    httpd = _TokenHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="token-server", daemon=True)
    ts = TokenServer(workdir, httpd, thread, key, cert, libtrust_key_id(der))
    httpd.tokens = ts
    thread.start()
    return ts


def main(argv: list[str] | None = None) -> int:
    """Serve one plain-HTTP registry storing under DIR; print its ``host:port`` when it
    answers; stop it on SIGTERM or SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m tests.support.registry", description=main.__doc__)
    ap.add_argument("dir", type=Path, help="where the registry keeps its config, log and blobs")
    args = ap.parse_args(argv)
    srv = start_registry(args.dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(srv.host, flush=True)
    try:
        while not stop.wait(0.5):
            if srv.proc.poll() is not None:
                print(f"docker-registry exited with {srv.proc.returncode}:\n{srv.log()}", file=sys.stderr)
                return 1
    finally:
        stop_registry(srv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
