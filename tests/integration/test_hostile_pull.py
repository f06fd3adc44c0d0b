"""Pulling hostile manifests, indexes and configs: one ``invalid argument`` line from the
CLI, ``InvalidArgument`` from the API, no image record, no snapshot, and — for the limits —
nothing fetched that the limit forbids.

Documents the real registry refuses on push (a ``size`` that is a string, a float, 2**64...)
are served by a small static registry on 127.0.0.1; configs (which registries store as
opaque blobs) and documents the real registry accepts are pushed to Debian's docker-registry.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ctrstore import InvalidArgument
from ctrstore.images import mediatypes as mt
from tests.support.cli import cli, one_line_error, store_client
from tests.support.crafted import (
    Crafted,
    crafted_image,
    desc,
    dumps,
    files_outside,
    nested_indexes,
    nothing_committed,
    sha,
)
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.root


class StaticRegistry:
    """A read-only registry API serving fixed blobs and manifests (one repository, ``app``),
    recording every request path."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.types: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def _answer(self, body: bool) -> None:
                with outer.lock:
                    outer.requests.append((self.command, self.path))
                data, ctype, digest = outer.lookup(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                if data is not None:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if body and data:
                    self.wfile.write(data)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.host = f"127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def lookup(self, path: str) -> tuple[bytes | None, str, str]:
        if path == "/v2/":
            return b"{}", "application/json", ""
        prefix = "/v2/app/"
        if not path.startswith(prefix):
            return None, "", ""
        kind, _, ref = path[len(prefix) :].partition("/")
        digest = self.tags.get(ref, ref) if kind == "manifests" else ref
        data = self.blobs.get(digest)
        return data, self.types.get(digest, mt.OCTET_STREAM), digest

    def serve(self, c: Crafted, tag: str = "1") -> str:
        for d, data in c.blobs.items():
            self.blobs[d] = data
        self.types[c.target["digest"]] = c.target["mediaType"]
        for d, data in c.blobs.items():
            if d != c.target["digest"] and data.startswith(b'{"schemaVersion":2,"mediaType":"'):
                self.types[d] = data.split(b'"mediaType":"', 1)[1].split(b'"', 1)[0].decode()
        self.tags[tag] = c.target["digest"]
        return f"{self.host}/app:{tag}"

    def blob_gets(self) -> set[str]:
        with self.lock:
            return {p.rsplit("/", 1)[1] for m, p in self.requests if m == "GET" and "/blobs/" in p}

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def static_registry() -> Iterator[StaticRegistry]:
    r = StaticRegistry()
    yield r
    r.close()


def _served(**kw: Any) -> Crafted:
    return crafted_image(**kw)


def _layer_size(value: Any) -> Crafted:
    return crafted_image(layer_desc_patch={"size": value})


def _index_platform(value: Any) -> Crafted:
    c = crafted_image()
    idx = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [{**_manifest_desc(c), "platform": value}],
    }
    data = c.add(dumps(idx))
    c.target = desc(data, mt.OCI_INDEX)
    return c


def _manifest_desc(c: Crafted) -> dict[str, Any]:
    import json

    index = json.loads(c.blobs[c.target["digest"]])
    return dict(index["manifests"][0])


def _big_config() -> Crafted:
    c = crafted_image(index=False)
    cfg = {"rootfs": {"type": "layers", "diff_ids": [sha(c.layers[0])]}, "pad": "x" * (5 << 20)}
    return crafted_image(config=cfg)


PULL_CASES: dict[str, tuple[Any, str]] = {
    "layer-size-string": (lambda: _layer_size("12"), "layers[0]: size must be an integer, not a string"),
    "layer-size-float": (lambda: _layer_size(1.5), "layers[0]: size must be an integer, not a number"),
    "layer-size-overflow": (lambda: _layer_size(2**64), "outside [0, 9223372036854775807]"),
    "layer-size-bool": (lambda: _layer_size(True), "size must be an integer, not a boolean"),
    "layer-digest-traversal": (
        lambda: crafted_image(layer_desc_patch={"digest": "sha256:../../../../../tmp/x"}),
        "invalid digest",
    ),
    "layer-annotations-list": (
        lambda: crafted_image(layer_desc_patch={"annotations": ["a"]}),
        "annotations must be an object",
    ),
    "platform-string": (lambda: _index_platform("linux/amd64"), "platform must be an object, not a string"),
    "platform-arch-int": (
        lambda: _index_platform({"os": "linux", "architecture": 1}),
        "platform.architecture",
    ),
    "manifest-deep-json": (
        lambda: crafted_image(manifest_patch={"x": _deep(70)}),
        "nested more than 64 levels",
    ),
    "manifest-config-missing": (lambda: crafted_image(manifest_patch={"config": None}), "config is missing"),
    "config-not-utf8": (lambda: crafted_image(config_bytes=b'{"os":"\xff"}'), "not UTF-8"),
    "config-env-string": (
        lambda: crafted_image(config={"config": {"Env": "A=1"}}),
        "config.Env must be an array",
    ),
    "config-too-large": (_big_config, "bytes a manifest, index or config may have"),
    "index-nesting": (lambda: nested_indexes(10), "nested more than 8 levels deep"),
    "too-many-layers": (lambda: crafted_image(n_layers=3), "3 layers is more than the 2 allowed"),
}


def _check_failed_pull(tmp_path: Path, ref: str, fragment: str) -> None:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    (store / "config.toml").write_text("max_layers = 2\n")
    before = files_outside(tmp_path, store)
    one_line_error(cli(store, "pull", "--plain-http", "--plain", ref), "invalid argument", fragment)
    client = store_client(store, config=str(store / "config.toml"))
    try:
        with pytest.raises(InvalidArgument, match=fragment.replace("[", r"\[").replace("(", r"\(")):
            client.pull(ref, plain_http=True)
        nothing_committed(client)
    finally:
        client.close()
    assert files_outside(tmp_path, store) == before


@pytest.mark.parametrize("case", sorted(PULL_CASES))
def test_hostile_pull(tmp_path: Path, static_registry: StaticRegistry, case: str) -> None:
    make, fragment = PULL_CASES[case]
    c = make()
    ref = static_registry.serve(c)
    _check_failed_pull(tmp_path, ref, fragment)
    layer_digests = {sha(x)[7:] for x in c.layers} | {sha(x) for x in c.layers}
    if case in ("too-many-layers", "config-too-large", "layer-size-string", "index-nesting"):
        # Refused before any layer (or the oversized config) was asked for.
        assert not (static_registry.blob_gets() & layer_digests), static_registry.requests
    if case == "config-too-large":
        cfg = next(d for d, data in c.blobs.items() if b'"pad"' in data)
        assert cfg not in static_registry.blob_gets()


def _deep(n: int) -> Any:
    v: Any = []
    for _ in range(n):
        v = [v]
    return v


def test_static_registry_serves_a_good_image(tmp_path: Path, static_registry: StaticRegistry) -> None:
    """The crafted image is fine when nothing is broken (each case fails for its own reason)."""
    ref = static_registry.serve(crafted_image(n_layers=2))
    store = tmp_path / "store"
    r = cli(store, "pull", "--plain-http", "--plain", ref)
    assert r.returncode == 0, r.stderr
    client = store_client(store)
    try:
        assert [i.name for i in client.images.list()] == [ref]
        assert client.check(ref).unpacked
    finally:
        client.close()


# -- the real registry ----------------------------------------------------------------------------
def _push(registry: RegistryServer, repo: str, tag: str, c: Crafted) -> str:
    """Upload ``c``'s blobs and manifests to the real registry with plain HTTP requests (the
    registry stores configs as opaque blobs, so a hostile config gets through)."""
    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        manifests = {}
        for d, data in c.blobs.items():
            if data.startswith(b'{"schemaVersion":2'):
                manifests[d] = data
                continue
            conn.request("POST", f"/v2/{repo}/blobs/uploads/")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 202, resp.status
            loc = resp.getheader("Location") or ""
            sep = "&" if "?" in loc else "?"
            path = loc.split(registry.host, 1)[-1]
            conn.request("PUT", f"{path}{sep}digest={d}", body=data,
                         headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 201, (resp.status, d)
        # Manifests before the index that lists them.
        order = sorted(manifests, key=lambda d: d == c.target["digest"])
        for d in order:
            data = manifests[d]
            media = data.split(b'"mediaType":"', 1)[1].split(b'"', 1)[0].decode()
            ref = tag if d == c.target["digest"] else d
            conn.request("PUT", f"/v2/{repo}/manifests/{ref}", body=data, headers={"Content-Type": media})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 201, (resp.status, body)
    finally:
        conn.close()
    return registry.ref(f"{repo}:{tag}")


REGISTRY_CASES: dict[str, tuple[Any, str]] = {
    "config-env-string": (
        lambda: crafted_image(config={"config": {"Env": "A=1"}}),
        "config.Env must be an array",
    ),
    "config-cmd-number": (
        lambda: crafted_image(config={"config": {"Cmd": [1]}}),
        "config.Cmd[0] must be a string",
    ),
    "config-diff-ids-bad": (
        lambda: crafted_image(config={"rootfs": {"type": "layers", "diff_ids": ["../../x"]}}),
        "rootfs.diff_ids[0]",
    ),
    "config-deep": (
        lambda: crafted_image(config_bytes=b'{"a":' * 70 + b"1" + b"}" * 70),
        "nested more than 64",
    ),
    "too-many-layers": (lambda: crafted_image(n_layers=3), "3 layers is more than the 2 allowed"),
}


@pytest.mark.parametrize("case", sorted(REGISTRY_CASES))
def test_hostile_pull_from_real_registry(tmp_path: Path, registry: RegistryServer, case: str) -> None:
    make, fragment = REGISTRY_CASES[case]
    ref = _push(registry, f"hostile/{case}", "1", make())
    _check_failed_pull(tmp_path, ref, fragment)
