"""``ctrstore serve``: the store as a registry, against real clients.

A root is filled by pulling from the real registry fixture (Debian's docker-registry); then
``ctrstore serve`` runs as its own process on a free port of 127.0.0.1 and is pulled from by
``ctrstore pull`` (another root, through a hosts.toml mirror, so with ``?ns=``), ``skopeo
copy`` and containerd's ``ctr images pull``, pushed to by ``skopeo copy`` and ``ctrstore push``,
and spoken to directly (ranges, errors, uploads) with ``http.client``. Every subprocess has a
timeout; every server is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.mount import temp_mount
from ctrstore.snapshots.testsuite import check_directory_equal
from tests.support.images import busybox_image
from tests.support.registry import (
    REGISTRY_HTPASSWD,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    RegistryServer,
    make_cert,
)
from tests.support.serve import (
    OCI_INDEX,
    OCI_MANIFEST,
    Containerd,
    Serve,
    ctrstore,
    error_code,
    mirror_hosts,
    request,
    start_serve,
    tree,
)

REPO = "serve/busybox"
TAG = "1"


# -- helpers ---------------------------------------------------------------------------------


# -- fixtures --------------------------------------------------------------------------------
@dataclass
class Upstream:
    registry: RegistryServer
    ref: str
    root: Path
    """A root that pulled ``ref`` from the registry (and unpacked it)."""
    objects: dict[str, bytes]
    """What the registry serves for ``ref``."""
    index: str
    """The digest ``ref`` resolves to."""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer) -> Iterator[Upstream]:
    tmp = tmp_path_factory.mktemp("serve-upstream")
    src = Client(root=tmp / "src", state=tmp / "src-state")
    ref = registry.ref(f"{REPO}:{TAG}")
    busybox_image(src.content, src.images, ref)
    busybox_image(src.content, src.images, registry.ref("serve/other:2"), compression="zstd")
    src.push(ref)
    src.push(registry.ref("serve/other:2"))
    src.close()
    root = tmp / "served"
    ctrstore(root, "pull", "--plain-http", ref)
    ctrstore(root, "pull", "--plain-http", "--no-unpack", registry.ref("serve/other:2"))
    objects = tree(registry.host, REPO, TAG)
    index = request(registry.host, "HEAD", f"/v2/{REPO}/manifests/{TAG}", headers={"Accept": OCI_INDEX})
    yield Upstream(registry, ref, root, objects, index[1]["docker-content-digest"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Serve]:
    """``ctrstore serve`` (read-only) on the root that pulled from the registry; requests
    without ``?ns=`` fall back to the registry's images (``--upstream``)."""
    srv = start_serve(upstream.root, tmp_path_factory.mktemp("serve"), "--upstream", upstream.registry.host)
    yield srv
    err = srv.stop()
    assert "stopped (SIGTERM)" in err, err


# -- reading ---------------------------------------------------------------------------------
def test_serves_what_upstream_serves(upstream: Upstream, served: Serve) -> None:
    """Manifests (by tag with ?ns=, by tag without, by digest) and blobs are the registry's
    bytes, with the right Content-Type and Docker-Content-Digest."""
    ns = f"?ns={upstream.registry.host}"
    assert tree(served.host, REPO, TAG, ns) == upstream.objects
    assert tree(served.host, REPO, TAG) == upstream.objects  # via --upstream
    status, hdrs, body = request(served.host, "GET", "/v2/")
    assert (status, body) == (200, b"{}")
    assert hdrs["docker-distribution-api-version"] == "registry/2.0"
    for method in ("HEAD", "GET"):
        status, hdrs, body = request(served.host, method, f"/v2/{REPO}/manifests/{TAG}{ns}")
        assert status == 200
        assert hdrs["content-type"] == OCI_INDEX
        assert hdrs["docker-content-digest"] == upstream.index
        assert int(hdrs["content-length"]) == len(upstream.objects[upstream.index])
        assert body == (upstream.objects[upstream.index] if method == "GET" else b"")
    manifest = json.loads(upstream.objects[upstream.index])["manifests"][0]["digest"]
    status, hdrs, _ = request(served.host, "HEAD", f"/v2/any/repo/manifests/{manifest}")
    assert (status, hdrs["content-type"]) == (200, OCI_MANIFEST)


@pytest.mark.root
def test_ctrstore_pull_from_serve_through_a_mirror(tmp_path: Path, upstream: Upstream, served: Serve) -> None:
    """Another root pulls the image through a hosts.toml mirror entry pointing at serve (the
    registry itself unreachable): same image, same blobs, same unpacked tree."""
    before = len(served.log_lines())
    hd = mirror_hosts(tmp_path, upstream.registry.host, served.url)
    other = tmp_path / "other"
    ctrstore(other, "pull", "--hosts-dir", str(hd), upstream.ref)
    a = Client(root=upstream.root, state=str(upstream.root) + "-state")
    b = Client(root=other, state=str(other) + "-state")
    try:
        assert b.images.get(upstream.ref).target == a.images.get(upstream.ref).target
        assert {i.digest for i in b.content.walk()} == set(upstream.objects)
        ca, cb = a.check(upstream.ref), b.check(upstream.ref)
        assert ca.complete and cb.complete and cb.unpacked
        chain = b.unpack(upstream.ref).chain_id
        sa, sb = a.snapshotter(), b.snapshotter()
        with (
            temp_mount(sa.view("cmp-a", chain), a.root / "tmpmounts") as ta,
            temp_mount(sb.view("cmp-b", chain), b.root / "tmpmounts") as tb,
        ):
            check_directory_equal(ta, tb)
        sa.remove("cmp-a")
        sb.remove("cmp-b")
    finally:
        a.close()
        b.close()

    def blobs(lines: list[str]) -> int:
        return sum("/blobs/sha256:" in line and " 200 " in line for line in lines)

    lines = served.wait_lines(before, lambda lines: blobs(lines) >= 4)
    ns = upstream.registry.host.replace(":", "%3A")
    assert any(f"/manifests/{TAG}?ns={ns} " in line and " 200 " in line for line in lines), lines
    assert blobs(lines) == 4, lines  # the config and 3 layers


def test_skopeo_copy_from_serve(tmp_path: Path, upstream: Upstream, served: Serve) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    layout = tmp_path / "layout"
    subprocess.run(
        [
            "skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{served.host}/{REPO}:{TAG}", f"oci:{layout}:{TAG}",
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [upstream.index]
    blobs = {f"sha256:{p.name}": p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}
    assert blobs == upstream.objects
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{served.host}/{REPO}:{TAG}"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    assert raw == upstream.objects[upstream.index]


@pytest.mark.root
def test_ctr_pull_from_serve(tmp_path: Path, upstream: Upstream, served: Serve) -> None:
    """containerd's own client pulls (and unpacks) through serve as a mirror (``?ns=``)."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed (apt-get install containerd)")
    before = len(served.log_lines())
    hd = mirror_hosts(tmp_path, upstream.registry.host, served.url)
    cd = Containerd(tmp_path / "containerd")
    try:
        p = cd.run("images", "pull", "--hosts-dir", str(hd), upstream.ref, check=False)
        assert p.returncode == 0, p.stderr + p.stdout + cd.log.read_text()[-2000:]
        images = cd.run("images", "ls").stdout.splitlines()[1:]
        assert [(line.split()[0], line.split()[2]) for line in images] == [(upstream.ref, upstream.index)]
        content = {line.split()[0] for line in cd.run("content", "ls").stdout.splitlines()[1:]}
        assert content == set(upstream.objects)
        cd.run("images", "rm", upstream.ref)
    finally:
        cd.stop()
    lines = served.wait_lines(before, lambda lines: any("containerd" in line for line in lines))
    ns = upstream.registry.host
    assert any(
        "containerd" in line and ("?ns=" + ns in line or "?ns=" + ns.replace(":", "%3A") in line)
        for line in lines
    ), lines


def test_range_and_head(upstream: Upstream, served: Serve) -> None:
    layer = max(upstream.objects, key=lambda d: len(upstream.objects[d]))
    data = upstream.objects[layer]
    size = len(data)
    path = f"/v2/{REPO}/blobs/{layer}"
    status, hdrs, body = request(served.host, "HEAD", path)
    assert (status, body) == (200, b"")
    assert int(hdrs["content-length"]) == size and hdrs["docker-content-digest"] == layer
    assert hdrs["accept-ranges"] == "bytes"
    cases = {
        "bytes=10-19": (10, 19),
        "bytes=100-": (100, size - 1),
        "bytes=-30": (size - 30, size - 1),
        f"bytes={size - 5}-{size + 100}": (size - 5, size - 1),
    }
    for rng, (first, last) in cases.items():
        status, hdrs, body = request(served.host, "GET", path, headers={"Range": rng})
        assert status == 206, rng
        assert hdrs["content-range"] == f"bytes {first}-{last}/{size}"
        assert body == data[first : last + 1]
    status, hdrs, body = request(served.host, "GET", path, headers={"Range": f"bytes={size}-"})
    assert status == 416 and hdrs["content-range"] == f"bytes */{size}"
    assert error_code(body) == "RANGE_INVALID"
    for ignored in ("bytes=0-1,5-9", "items=0-3", "bytes=9-2", "bytes=x-"):
        status, _, body = request(served.host, "GET", path, headers={"Range": ignored})
        assert (status, body) == (200, data), ignored
    status, hdrs, _ = request(served.host, "HEAD", path, headers={"Range": "bytes=0-0"})
    assert status == 206 and hdrs["content-length"] == "1"


def test_catalog_and_tags(upstream: Upstream, served: Serve) -> None:
    ns = upstream.registry.host
    status, _, body = request(served.host, "GET", f"/v2/_catalog?ns={ns}")
    assert status == 200 and json.loads(body) == {"repositories": ["serve/busybox", "serve/other"]}
    status, hdrs, body = request(served.host, "GET", f"/v2/_catalog?ns={ns}&n=1")
    assert json.loads(body) == {"repositories": ["serve/busybox"]}
    assert hdrs["link"] == f'</v2/_catalog?ns={ns.replace(":", "%3A")}&last=serve%2Fbusybox&n=1>; rel="next"'
    status, _, body = request(served.host, "GET", f"/v2/_catalog?ns={ns}&n=1&last=serve/busybox")
    assert json.loads(body) == {"repositories": ["serve/other"]}
    status, _, body = request(served.host, "GET", "/v2/_catalog?ns=quay.io")
    assert (status, json.loads(body)) == (200, {"repositories": []})
    status, _, body = request(served.host, "GET", f"/v2/{REPO}/tags/list?ns={ns}")
    assert json.loads(body) == {"name": REPO, "tags": [TAG]}
    status, _, body = request(served.host, "GET", "/v2/serve/other/tags/list")  # via --upstream
    assert json.loads(body) == {"name": "serve/other", "tags": ["2"]}
    status, _, body = request(served.host, "GET", f"/v2/{REPO}/tags/list?ns=quay.io")
    assert status == 404 and error_code(body) == "NAME_UNKNOWN"


def test_errors_in_the_spec_shape(upstream: Upstream, served: Serve) -> None:
    ns = f"?ns={upstream.registry.host}"
    layer = next(d for d, b in upstream.objects.items() if not b.startswith(b"{"))
    missing = "sha256:" + "0" * 64
    cases: list[tuple[str, str, int, str]] = [
        ("GET", f"/v2/{REPO}/manifests/nope{ns}", 404, "MANIFEST_UNKNOWN"),
        ("GET", f"/v2/{REPO}/manifests/a=b{ns}", 400, "TAG_INVALID"),
        ("GET", f"/v2/{REPO}/manifests/{missing}", 404, "MANIFEST_UNKNOWN"),
        ("GET", f"/v2/{REPO}/manifests/{layer}", 404, "MANIFEST_UNKNOWN"),  # a layer is no manifest
        ("GET", f"/v2/{REPO}/blobs/{missing}", 404, "BLOB_UNKNOWN"),
        ("HEAD", f"/v2/{REPO}/blobs/{missing}", 404, "BLOB_UNKNOWN"),
        ("GET", f"/v2/{REPO}/blobs/sha256:abc", 400, "DIGEST_INVALID"),
        ("GET", "/v2/Upper/Case/tags/list", 404, "NOT_FOUND"),
        ("GET", f"/v2/{REPO}/tags/list?ns=bad host", 400, "NAME_INVALID"),
        ("GET", "/v2/_catalog?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
        ("GET", "/nothing", 404, "NOT_FOUND"),
        ("POST", f"/v2/{REPO}/blobs/uploads/", 405, "UNSUPPORTED"),
        ("PUT", f"/v2/{REPO}/manifests/x", 405, "UNSUPPORTED"),
        ("DELETE", f"/v2/{REPO}/manifests/{TAG}", 405, "UNSUPPORTED"),
        ("OPTIONS", "/v2/", 405, "UNSUPPORTED"),
    ]
    for method, path, want_status, want_code in cases:
        status, hdrs, body = request(served.host, method, path.replace(" ", "%20"))
        assert status == want_status, (method, path, status, body)
        if method != "HEAD":
            assert hdrs["content-type"] == "application/json"
            assert error_code(body) == want_code, (method, path, body)
    lines = served.wait_lines(0, lambda lines: any("OPTIONS /v2/" in line for line in lines))
    assert any(
        f'"GET /v2/{REPO}/manifests/nope{ns} HTTP/1.1" 404 ' in line and "MANIFEST_UNKNOWN" in line
        for line in lines
    )


def test_access_log_lines(served: Serve) -> None:
    """One line per request: time, client, user, request, status, bytes, duration, code and
    User-Agent, with the client's text escaped."""
    host, port = served.host.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b'GET /v2/ HTTP/1.1\r\nHost: x\r\nUser-Agent: evil\x1b[31m"agent\r\nConnection: close\r\n\r\n'
        )
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    lines = served.wait_lines(0, lambda lines: any("evil" in line for line in lines))
    line = next(line for line in lines if "evil" in line)
    assert re.fullmatch(
        r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1 - "GET /v2/ HTTP/1\.1" 200 2 \d+\.\d{3}s - '
        r'"evil\\x1b\[31m\\"agent"',
        line,
    ), line


def _get_all(host: str, path: str, want: str, results: list[str], rng: str | None = None) -> None:
    try:
        status, _, body = request(host, "GET", path, headers={"Range": rng} if rng else {})
        ok = status in (200, 206) and (
            rng is not None or "sha256:" + hashlib.sha256(body).hexdigest() == want
        )
        results.append("ok" if ok else f"status {status}, {len(body)} bytes")
    except Exception as e:
        results.append(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("max_connections", [128, 3])
def test_concurrent_clients(tmp_path: Path, upstream: Upstream, max_connections: int) -> None:
    """16 clients at once fetch an 8 MiB blob (and 4 fetch ranges), each on its own
    connection; with --max-connections 3 the others wait their turn instead of failing."""
    data = os.urandom(8 << 20)
    c = Client(root=upstream.root, state=str(upstream.root) + "-state")
    digest = c.content.ingest("serve-test-big", data, labels={"containerd.io/gc.root": "test"})
    c.close()
    srv = start_serve(upstream.root, tmp_path, "--max-connections", str(max_connections))
    try:
        results: list[str] = []
        path = f"/v2/big/blob/blobs/{digest}"
        threads = [
            threading.Thread(target=_get_all, args=(srv.host, path, digest, results)) for _ in range(16)
        ]
        threads += [
            threading.Thread(target=_get_all, args=(srv.host, path, digest, results, f"bytes={i << 20}-"))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "clients still running after 120 s"
        assert results == ["ok"] * 20, results
    finally:
        srv.stop()
    lines = [line for line in srv.log_lines() if digest in line]
    assert sum(f" 200 {8 << 20} " in line for line in lines) == 16, lines
    assert sum(" 206 " in line for line in lines) == 4, lines


# -- TLS and authentication ------------------------------------------------------------------
def test_tls_and_basic_auth(tmp_path: Path, upstream: Upstream) -> None:
    cert, key = make_cert(tmp_path)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(REGISTRY_HTPASSWD)
    srv = start_serve(
        upstream.root, tmp_path, "--upstream", upstream.registry.host,
        "--tls-cert", str(cert), "--tls-key", str(key), "--htpasswd", str(htpasswd),
    )  # fmt: skip
    try:
        assert srv.scheme == "https"
        ctx = ssl.create_default_context(cafile=str(cert))
        status, hdrs, body = request(srv.host, "GET", "/v2/", context=ctx)
        assert status == 401 and hdrs["www-authenticate"] == 'Basic realm="ctrstore"'
        assert error_code(body) == "UNAUTHORIZED"
        wrong = base64.b64encode(f"{REGISTRY_USER}:nope".encode()).decode()
        status, _, _ = request(
            srv.host, "GET", "/v2/", headers={"Authorization": f"Basic {wrong}"}, context=ctx
        )
        assert status == 401
        good = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        status, _, _ = request(
            srv.host,
            "GET",
            f"/v2/{REPO}/manifests/{TAG}",
            headers={"Authorization": f"Basic {good}"},
            context=ctx,
        )
        assert status == 200
        with pytest.raises(ssl.SSLError):
            request(srv.host, "GET", "/v2/", context=ssl.create_default_context())  # not trusted
        # ctrstore pull, trusting the certificate (hosts.toml ca) with the password in config.json
        home = tmp_path / "home"
        (home / ".docker").mkdir(parents=True)
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {srv.host: {"auth": good}}}))
        hd = tmp_path / "certs.d"
        (hd / srv.host).mkdir(parents=True)
        (hd / srv.host / "hosts.toml").write_text(f'server = "https://{srv.host}"\nca = "{cert}"\n')
        other = tmp_path / "other"
        ctrstore(
            other,
            "pull",
            "--no-unpack",
            "--hosts-dir",
            str(hd),
            f"{srv.host}/{REPO}:{TAG}",
            env={"HOME": str(home)},
        )
        assert f"{srv.host}/{REPO}:{TAG}" in ctrstore(other, "images", "ls", "--format", "{{.Name}}")
        if shutil.which("skopeo"):
            certs = tmp_path / "skopeo-certs"
            certs.mkdir()
            shutil.copy(cert, certs / "ca.crt")
            src = f"docker://{srv.host}/{REPO}:{TAG}"
            p = subprocess.run(
                ["skopeo", "inspect", "--raw", "--cert-dir", str(certs), src], capture_output=True, timeout=60
            )
            assert p.returncode != 0 and b"unauthorized" in p.stderr.lower(), p.stderr
            raw = subprocess.run(
                [
                    "skopeo", "inspect", "--raw", "--cert-dir", str(certs),
                    "--creds", f"{REGISTRY_USER}:{REGISTRY_PASSWORD}", src,
                ],
                check=True, capture_output=True, timeout=60,
            ).stdout  # fmt: skip
            assert raw == upstream.objects[upstream.index]
    finally:
        srv.stop()
    lines = srv.log_lines()
    assert any(' - "GET /v2/ HTTP/1.1" 401 ' in line and "UNAUTHORIZED" in line for line in lines), lines
    assert any(f" {REGISTRY_USER} " in line and " 200 " in line for line in lines), lines
    assert any("TLS_HANDSHAKE" in line for line in lines), lines


def test_bearer_token_file(tmp_path: Path, upstream: Upstream) -> None:
    token = "t-" + "0123456789abcdef" * 2
    (tmp_path / "tokens").write_text(f"# serve tokens\n{token}\n")
    srv = start_serve(upstream.root, tmp_path, "--token-file", str(tmp_path / "tokens"))
    try:
        status, hdrs, _ = request(srv.host, "GET", "/v2/")
        assert status == 401 and hdrs["www-authenticate"] == 'Bearer realm="ctrstore"'
        status, _, _ = request(srv.host, "GET", "/v2/", headers={"Authorization": f"Bearer {token}x"})
        assert status == 401
        status, _, _ = request(srv.host, "GET", "/v2/", headers={"Authorization": f"Bearer {token}"})
        assert status == 200
    finally:
        srv.stop()
    assert any(" token:1 " in line for line in srv.log_lines())
    assert not any(token in line for line in srv.log_lines())


# -- pushing ---------------------------------------------------------------------------------
def test_push_with_skopeo_and_ctrstore(tmp_path: Path, upstream: Upstream) -> None:
    """skopeo and ctrstore push into serve --push; the images are named after the server, kept
    by gc, and pulled back (by another root) unchanged."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    dest = tmp_path / "dest"
    srv = start_serve(dest, tmp_path, "--push")
    try:
        subprocess.run(
            [
                "skopeo", "copy", "--all", "--preserve-digests",
                "--src-tls-verify=false", "--dest-tls-verify=false",
                f"docker://{upstream.ref}", f"docker://{srv.host}/pushed/busybox:1",
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        # ctrstore push of an image the server does not have yet (zstd layers).
        src = tmp_path / "src"
        c = Client(root=src, state=str(src) + "-state")
        mine = busybox_image(c.content, c.images, f"{srv.host}/mine/app:2", compression="zstd")
        c.close()
        ctrstore(src, "push", "--plain-http", mine.name)
        d = Client(root=dest, state=str(dest) + "-state")
        try:
            assert d.images.get(f"{srv.host}/pushed/busybox:1").target.digest == upstream.index
            assert d.images.get(mine.name).target == mine.target
            d.gc()  # what the images name is kept; the server's lease holds the rest for now
            for lease in d.leases.list():
                d.leases.delete(lease.id)
            d.gc()
            assert d.check(f"{srv.host}/pushed/busybox:1").complete
            assert d.check(mine.name).complete
            assert d.content.list_statuses() == []  # no upload left behind
        finally:
            d.close()
        # Pulled back, by the name it was pushed as (no ?ns=: the server's own name).
        back = tmp_path / "back"
        ctrstore(back, "pull", "--plain-http", "--no-unpack", f"{srv.host}/pushed/busybox:1")
        assert tree(srv.host, "pushed/busybox", "1") == upstream.objects
    finally:
        srv.stop()
    assert any('"PUT /v2/pushed/busybox/manifests/1 HTTP/1.1" 201 ' in line for line in srv.log_lines())


def test_uploads_chunked_monolithic_mount(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    srv = start_serve(dest, tmp_path, "--push")
    try:
        data = os.urandom(3000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, hdrs, _ = request(srv.host, "POST", "/v2/a/b/blobs/uploads/")
        assert status == 202 and hdrs["range"] == "0-0"
        loc, uuid = hdrs["location"], hdrs["docker-upload-uuid"]
        assert loc == f"/v2/a/b/blobs/uploads/{uuid}"
        status, hdrs, _ = request(
            srv.host, "PATCH", loc, body=data[:1000], headers={"Content-Range": "0-999"}
        )
        assert status == 202 and hdrs["range"] == "0-999"
        status, hdrs, body = request(
            srv.host, "PATCH", loc, body=data[500:1000], headers={"Content-Range": "500-999"}
        )
        assert status == 416 and hdrs["range"] == "0-999" and error_code(body) == "BLOB_UPLOAD_INVALID"
        status, hdrs, _ = request(
            srv.host, "PATCH", loc, body=data[1000:2000], headers={"Content-Range": "1000-1999"}
        )
        assert status == 202 and hdrs["range"] == "0-1999"
        status, hdrs, _ = request(srv.host, "GET", loc)
        assert status == 204 and hdrs["range"] == "0-1999"
        status, hdrs, _ = request(srv.host, "PUT", f"{loc}?digest={digest}", body=data[2000:])
        assert status == 201 and hdrs["docker-content-digest"] == digest
        assert hdrs["location"] == f"/v2/a/b/blobs/{digest.replace(':', '%3A')}"
        # Committed, verified, and kept by the server's lease through a gc.
        d = Client(root=dest, state=str(dest) + "-state")
        try:
            d.gc()
            assert d.content.read_bytes(digest) == data
            assert d.content.list_statuses() == []
        finally:
            d.close()
        status, _, body = request(srv.host, "GET", f"/v2/x/y/blobs/{digest}")
        assert (status, body) == (200, data)
        # Monolithic POST, cross-repository mount of a blob the namespace has, and one it has not.
        small = b"monolithic"
        sd = "sha256:" + hashlib.sha256(small).hexdigest()
        status, hdrs, _ = request(srv.host, "POST", f"/v2/c/d/blobs/uploads/?digest={sd}", body=small)
        assert status == 201 and hdrs["docker-content-digest"] == sd
        status, hdrs, _ = request(srv.host, "POST", f"/v2/e/f/blobs/uploads/?mount={digest}&from=a/b")
        assert status == 201 and hdrs["location"] == f"/v2/e/f/blobs/{digest.replace(':', '%3A')}"
        status, hdrs, _ = request(
            srv.host, "POST", f"/v2/e/f/blobs/uploads/?mount=sha256:{'1' * 64}&from=a/b"
        )
        assert status == 202 and "docker-upload-uuid" in hdrs
        status, _, _ = request(srv.host, "DELETE", hdrs["location"])
        assert status == 204
        status, _, body = request(srv.host, "GET", hdrs["location"])
        assert status == 404 and error_code(body) == "BLOB_UPLOAD_UNKNOWN"
        # A chunked (Transfer-Encoding) PATCH, as docker and skopeo stream layers.
        status, hdrs, _ = request(srv.host, "POST", "/v2/g/h/blobs/uploads/")
        conn = http.client.HTTPConnection(srv.host, timeout=30)
        conn.request("PATCH", hdrs["location"], body=iter([data[:7], data[7:]]), encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 202 and resp.getheader("Range") == f"0-{len(data) - 1}"
        status, _, _ = request(srv.host, "PUT", f"{hdrs['location']}?digest={digest}")
        assert status == 201
    finally:
        srv.stop()


def test_corrupted_upload_commits_nothing(tmp_path: Path) -> None:
    """A blob whose bytes are not the digest named, a manifest PUT by a digest it does not
    have, a manifest naming blobs the registry lacks: refused, and nothing is stored."""
    dest = tmp_path / "dest"
    srv = start_serve(dest, tmp_path, "--push")
    try:
        good = os.urandom(5000)
        bad = bytearray(good)
        bad[2500] ^= 0xFF
        digest = "sha256:" + hashlib.sha256(good).hexdigest()
        status, hdrs, _ = request(srv.host, "POST", "/v2/a/b/blobs/uploads/")
        loc = hdrs["location"]
        status, _, _ = request(srv.host, "PATCH", loc, body=bytes(bad))
        assert status == 202
        status, _, body = request(srv.host, "PUT", f"{loc}?digest={digest}")
        assert status == 400 and error_code(body) == "DIGEST_INVALID"
        status, _, body = request(srv.host, "GET", loc)
        assert status == 404 and error_code(body) == "BLOB_UPLOAD_UNKNOWN"  # the upload is dropped
        status, _, body = request(
            srv.host, "POST", f"/v2/a/b/blobs/uploads/?digest={digest}", body=bytes(bad)
        )
        assert status == 400 and error_code(body) == "DIGEST_INVALID"
        status, _, body = request(srv.host, "HEAD", f"/v2/a/b/blobs/{digest}")
        assert status == 404
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest,
                    "size": 5000,
                },
                "layers": [],
            }
        ).encode()
        ct = {"Content-Type": OCI_MANIFEST}
        status, _, body = request(srv.host, "PUT", "/v2/a/b/manifests/1", body=manifest, headers=ct)
        assert status == 400 and error_code(body) == "MANIFEST_BLOB_UNKNOWN"
        assert digest in json.dumps(json.loads(body))
        other = "sha256:" + hashlib.sha256(b"other").hexdigest()
        status, _, body = request(srv.host, "PUT", f"/v2/a/b/manifests/{other}", body=manifest, headers=ct)
        assert status == 400 and error_code(body) == "DIGEST_INVALID"
        status, _, body = request(srv.host, "PUT", "/v2/a/b/manifests/1", body=b"{not json", headers=ct)
        assert status == 400 and error_code(body) == "MANIFEST_INVALID"
        d = Client(root=dest, state=str(dest) + "-state")
        try:
            assert list(d.content.walk()) == []
            assert d.images.list() == []
            assert d.content.list_statuses() == []
        finally:
            d.close()
    finally:
        srv.stop()


# -- the command -----------------------------------------------------------------------------
def test_sigint_stops_cleanly(tmp_path: Path, upstream: Upstream) -> None:
    srv = start_serve(upstream.root, tmp_path)
    conn = http.client.HTTPConnection(srv.host, timeout=10)  # an idle keep-alive connection
    conn.request("GET", "/v2/")
    conn.getresponse().read()
    err = srv.stop(signal.SIGINT)
    conn.close()
    assert "stopped (SIGINT)" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--addr", "0.0.0.0:0", "--push"], "--push on 0.0.0.0:0 would let anyone"),
        (["--addr", "nonsense"], "expected HOST:PORT"),
        (["--addr", "BUSY"], "unavailable: cannot listen on 127.0.0.1:"),
        (["--addr", "192.0.2.1:0"], "not an address of this machine"),
        (
            ["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"],
            "--tls-cert /nonexistent.pem: no such file",
        ),
        (["--tls-cert", "/etc/hostname"], "--tls-cert and --tls-key go together"),
        (["--htpasswd", "HTPASSWD"], "line 2: user 'bob': unsupported password hash"),
        (["--token-file", "TOKENS"], "too short to be a secret"),
        (["-n", "nosuchns"], "namespace 'nosuchns' does not exist"),
        (["--upstream", "bad host"], "invalid registry host in --upstream"),
    ],
)
def test_refused_options(tmp_path: Path, upstream: Upstream, args: list[str], message: str) -> None:
    (tmp_path / "htpasswd").write_text(REGISTRY_HTPASSWD + "bob:$apr1$abc$def\n")
    (tmp_path / "tokens").write_text("short\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    with socket.socket() as busy:  # a port another program listens on
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [
            a.replace("HTPASSWD", str(tmp_path / "htpasswd"))
            .replace("TOKENS", str(tmp_path / "tokens"))
            .replace("BUSY", f"127.0.0.1:{busy.getsockname()[1]}")
            for a in args
        ]
        p = subprocess.run(
            [
                sys.executable, "-m", "ctrstore", "--root", str(upstream.root),
                "--state", str(upstream.root) + "-state", "serve", "--addr", "127.0.0.1:0", *args,
            ],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctrstore: ") and message in lines[0], p.stderr
