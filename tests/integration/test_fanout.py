"""Nodes that pull from each other: one upstream registry (Debian's docker-registry behind a
counting proxy, ``peers.CountingProxy``) and several nodes, each a root of its own with
``ctrstore serve`` on its own ``127.0.0.x`` address. A node's hosts.toml lists the nodes that
pulled before it as mirrors (containerd's ``[host]`` entries), the upstream last.

- the first node pulls from the upstream (its peers, empty, are asked first and have
  nothing: not the tag, not a blob), the others through the peers; every blob leaves the
  upstream once, and each pull names the host each blob came from;
- a peer killed in the middle of a blob fails no pull: the next host continues the blob
  with ``Range``; so does one that stalls (its ``read_timeout``); a dead peer is passed over;
  a peer that sends wrong bytes is caught by the digest check and the blob fetched again from
  the upstream;
- containerd (``ctr images pull --hosts-dir``) pulls through the same peers. That
  ``ctr`` and ``skopeo copy`` get from ``ctrstore serve`` what the upstream serves is
  ``test_serve.py``'s (``test_ctr_pull_from_serve``, ``test_skopeo_copy_from_serve``).

The image has one 24 MiB incompressible layer, so that a peer can be killed while it is
being sent (the kernel's socket buffers hold a few MiB at most), and is pulled without
unpacking: what is tested is where the bytes come from.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.images.build import Entry, build_image, tar_from_entries
from ctrstore.images.pull import Status
from ctrstore.mount import temp_mount
from tests.support.hostile import HostileServer, reply
from tests.support.peers import CountingProxy, FaultyPeer, peer_hosts, start_node_serve
from tests.support.registry import RegistryServer
from tests.support.serve import Containerd, Serve, ctrstore, tree

REPO = "fan/app"
TAG = "1"
BIG = 24 << 20


@dataclass
class Upstream:
    registry: RegistryServer
    proxy: CountingProxy
    ref: str
    """``<proxy host>/fan/app:1``: what the nodes pull (the proxy is the registry they know)."""
    objects: dict[str, bytes]
    """What the registry serves for the image (digest -> bytes)."""
    big: str
    """The digest of the 24 MiB layer."""

    @property
    def server(self) -> str:
        return f"http://{self.proxy.host}"

    def sizes(self) -> dict[str, int]:
        return {d: len(b) for d, b in self.objects.items()}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer) -> Iterator[Upstream]:
    tmp = tmp_path_factory.mktemp("fanout-upstream")
    src = Client(root=tmp / "src", state=tmp / "src-state")
    name = registry.ref(f"{REPO}:{TAG}")
    layers = [
        tar_from_entries([Entry("data", "dir"), Entry("data/big", data=os.urandom(BIG))]),
        tar_from_entries([Entry("etc", "dir"), Entry("etc/hostname", data=b"fanout\n")]),
    ]
    build_image(src.content, src.images, name, layers, compression="none")
    src.push(name, plain_http=True)
    src.close()
    shutil.rmtree(tmp / "src")
    objects = tree(registry.host, REPO, TAG)
    big = next(d for d, b in objects.items() if len(b) > BIG)
    proxy = CountingProxy(registry.host)
    yield Upstream(registry, proxy, f"{proxy.host}/{REPO}:{TAG}", objects, big)
    proxy.close()


class Nodes:
    """Node roots under a test's tmp_path, each with ``ctrstore serve`` on 127.0.0.<n>."""

    def __init__(self, tmp: Path, upstream: Upstream) -> None:
        self.tmp = tmp
        self.up = upstream
        self.serves: dict[str, Serve] = {}

    def root(self, name: str) -> Path:
        return self.tmp / name

    def serve(self, name: str, ip: str) -> Serve:
        srv = start_node_serve(self.root(name), self.tmp / "logs", ip)
        self.serves[name] = srv
        return srv

    def hosts(self, name: str, peers: list[str], **kw: object) -> Path:
        """The certs.d of node ``name``: ``peers`` (node names or URLs) before the upstream."""
        urls = [self.serves[p].url if p in self.serves else p for p in peers]
        return peer_hosts(self.tmp / name, self.up.proxy.host, self.up.server, urls, **kw)  # type: ignore[arg-type]

    def pull(self, name: str, peers: list[str]) -> str:
        """``ctrstore pull --no-unpack`` on node ``name`` through ``peers``: its output."""
        hd = self.hosts(name, peers)
        return ctrstore(self.root(name), "pull", "--no-unpack", "--hosts-dir", str(hd), self.up.ref)

    def check(self, name: str) -> None:
        """The node holds the whole image, the upstream's digests and nothing else."""
        c = Client(root=self.root(name), state=str(self.root(name)) + "-state")
        try:
            assert c.check(self.up.ref).complete
            assert {i.digest for i in c.content.walk()} == set(self.up.objects)
        finally:
            c.close()

    def stop(self) -> None:
        for srv in self.serves.values():
            if srv.proc.poll() is None:
                srv.stop()


@pytest.fixture
def nodes(tmp_path: Path, upstream: Upstream) -> Iterator[Nodes]:
    n = Nodes(tmp_path, upstream)
    try:
        yield n
    finally:
        n.stop()


def sources(output: str) -> dict[str, str]:
    """``digest -> where from`` of the blobs ``ctrstore pull --plain`` fetched: the last
    ``downloading from`` line of each that has a ``done`` line."""
    where = dict(re.findall(r"^\w+-(sha256:[0-9a-f]{64}): downloading from (.+)$", output, re.M))
    done = set(re.findall(r"^\w+-(sha256:[0-9a-f]{64}): done$", output, re.M))
    return {d: w for d, w in where.items() if d in done}


def test_fan_out_every_blob_leaves_the_upstream_once(nodes: Nodes, upstream: Upstream) -> None:
    since = len(upstream.proxy.log())
    n1 = nodes.serve("n1", "127.0.0.11")
    n2 = nodes.serve("n2", "127.0.0.12")
    n3 = nodes.serve("n3", "127.0.0.13")
    nodes.serve("n4", "127.0.0.14")

    # n1: its peers are empty (they have neither the tag nor a blob): all from the upstream.
    out = nodes.pull("n1", ["n2", "n3"])
    nodes.check("n1")
    assert set(sources(out).values()) == {upstream.proxy.host}, out
    ns = upstream.proxy.host.replace(":", "%3A")
    for peer in (n2, n3):
        lines = peer.wait_lines(0, lambda ls: any("/blobs/" in line for line in ls))
        assert any(f"HEAD /v2/{REPO}/manifests/{TAG}?ns={ns} " in line and " 404 " in line for line in lines)
    assert upstream.proxy.sent_by_digest(since) == upstream.sizes()

    # n2 through n1: the tag (n1 may resolve) and every blob from n1; nothing from the upstream.
    mark = len(upstream.proxy.log())
    out = nodes.pull("n2", ["n1"])
    nodes.check("n2")
    got = sources(out)
    assert set(got) == set(upstream.objects) and set(got.values()) == {n1.host}, out
    assert upstream.proxy.log()[mark:] == []

    # n3 through n2, then n1: n2 is killed while it sends the big layer; n1 continues it.
    killed: list[int] = []

    def kill_n2(s: Status) -> None:
        if (
            not killed
            and s.key == f"layer-{upstream.big}"
            and s.state == "downloading"
            and s.offset >= 1 << 20
            and s.source == n2.host
        ):
            killed.append(s.offset)
            n2.proc.send_signal(signal.SIGKILL)
            n2.proc.wait(10)

    c3 = Client(root=nodes.root("n3"), state=str(nodes.root("n3")) + "-state")
    try:
        result = c3.pull(
            upstream.ref, unpack=False, hosts_dir=nodes.hosts("n3", ["n2", "n1"]), progress=kill_n2
        )
    finally:
        c3.close()
    assert killed, "n2 was never seen sending the big layer"
    nodes.check("n3")
    m = re.fullmatch(
        rf"{re.escape(n2.host)}, {re.escape(n1.host)} from byte (\d+)", result.sources[upstream.big]
    )
    assert m, result.sources
    assert killed[0] <= int(m.group(1)) < BIG  # n2 died mid-blob; n1 sent the rest
    assert set(result.sources.values()) - {result.sources[upstream.big]} <= {n2.host, n1.host}
    big_gets = [line for line in n1.log_lines() if f"/blobs/{upstream.big}" in line and "GET" in line]
    assert any(" 206 " in line for line in big_gets), big_gets
    assert upstream.proxy.log()[mark:] == []

    # n4: the dead n2 first, then n3: everything from n3.
    out = nodes.pull("n4", ["n2", "n3", "n1"])
    nodes.check("n4")
    assert set(sources(out).values()) == {n3.host}, out
    assert upstream.proxy.log()[mark:] == []
    assert upstream.proxy.sent_by_digest(since) == upstream.sizes()  # each blob left it once


def test_peer_lacking_the_tag_falls_through_to_the_upstream(nodes: Nodes, upstream: Upstream) -> None:
    """An empty peer trusted with tags (``resolve``) answers 404 for the tag: the upstream
    resolves it; with ``pull`` only it is not asked for the tag at all (only for blobs)."""
    empty = nodes.serve("empty", "127.0.0.15")
    mark = len(upstream.proxy.log())
    nodes.pull("a", ["empty"])
    tag_heads = [f for f in upstream.proxy.log()[mark:] if f.path.endswith(f"/manifests/{TAG}")]
    assert [(f.method, f.status) for f in tag_heads] == [("HEAD", 200)]
    ns = upstream.proxy.host.replace(":", "%3A")
    lines = empty.log_lines()
    assert any(f"/manifests/{TAG}?ns={ns} " in line and " 404 " in line for line in lines), lines
    before = len(lines)
    nodes.hosts("b", ["empty"], capabilities=("pull",))
    ctrstore(
        nodes.root("b"), "pull", "--no-unpack", "--hosts-dir", str(nodes.tmp / "b" / "certs.d"), upstream.ref
    )
    later = empty.wait_lines(before, lambda ls: any("/blobs/" in line for line in ls))
    assert not any(f"/manifests/{TAG}" in line for line in later), later
    assert any("/blobs/" in line and " 404 " in line for line in later), later


def test_wrong_bytes_from_a_peer_are_fetched_again_from_the_upstream(
    nodes: Nodes, upstream: Upstream
) -> None:
    """A peer that sends every blob as zeros of the right length: each blob fails its digest
    check, is dropped, and comes from the upstream (the only host asked for it then); the pull
    succeeds and says so."""
    liar = FaultyPeer("127.0.0.16", upstream.objects, "lie")
    try:
        mark = len(upstream.proxy.log())
        out = nodes.pull("c", [liar.url])
        nodes.check("c")
    finally:
        liar.close()
    blobs = {d for d in upstream.objects if f"GET /v2/{REPO}/blobs/{d}" in liar.seen()}
    assert upstream.big in blobs
    assert set(sources(out).values()) == {upstream.proxy.host}, out
    retried = re.findall(r": retrying \(the bytes from (\S+) do not match the digest\)$", out, re.M)
    assert retried == [liar.url.removeprefix("http://")] * len(blobs), out
    sent = upstream.proxy.sent_by_digest(mark)
    assert sent == upstream.sizes()  # each blob once from the upstream, none twice


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_wrong_bytes_from_a_peer_while_unpacking_are_applied_again_from_the_upstream(
    nodes: Nodes, upstream: Upstream, snapshotter: str
) -> None:
    """The same lying peer, but the pull unpacks: each layer is applied from its ingest as
    the peer's zeros arrive (``ctrstore.stream``), the digest check fails, and the blob comes
    again from the upstream. The pull must not fail on the broken-off stream: what was
    applied from the wrong bytes is thrown away (overlay: the upper dir emptied; native: the
    snapshot prepared anew) and the layer applied from the stored blob. The image ends
    unpacked with exactly the layers' files, and no ``extract-`` snapshot is left."""
    liar = FaultyPeer("127.0.0.20" if snapshotter == "native" else "127.0.0.21", upstream.objects, "lie")
    root = nodes.root("u")
    try:
        hd = nodes.hosts("u", [liar.url])
        out = ctrstore(
            root, "pull", "--plain", "--snapshotter", snapshotter, "--hosts-dir", str(hd), upstream.ref
        )
    finally:
        liar.close()
    assert f"retrying (the bytes from {liar.url.removeprefix('http://')}" in out, out
    c = Client(root=root, state=str(root) + "-state")
    try:
        check = c.check(upstream.ref, snapshotter=snapshotter)
        assert check.complete and check.unpacked, check
        sn = c.snapshotter(snapshotter)
        assert [i.name for i in sn.walk() if i.name.startswith("extract-")] == []
        top = c.unpack(upstream.ref, snapshotter=snapshotter)
        assert top.applied == []  # all there already
        with temp_mount(sn.view("check", top.chain_id), root.parent / "mnt-u") as fs:
            files = sorted(str(p.relative_to(fs)) for p in fs.rglob("*"))
            assert files == ["data", "data/big", "etc", "etc/hostname"], files
            layer = next(b for b in upstream.objects.values() if len(b) > BIG)
            with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
                member = tf.extractfile("data/big")
                assert member is not None
                assert (fs / "data" / "big").read_bytes() == member.read()
            assert (fs / "etc" / "hostname").read_bytes() == b"fanout\n"
        sn.remove("check")
    finally:
        c.close()


def test_stalled_peer_times_out_and_the_upstream_sends_the_rest(nodes: Nodes, upstream: Upstream) -> None:
    """A peer that has only the big layer sends half of it and then nothing: after its
    ``read_timeout`` (1 s here, from hosts.toml) the upstream is asked for the rest only,
    with ``Range``."""
    staller = FaultyPeer("127.0.0.18", {upstream.big: upstream.objects[upstream.big]}, "stall")
    try:
        mark = len(upstream.proxy.log())
        hd = nodes.hosts("d", [staller.url], extra='  read_timeout = "1s"\n')
        # 30 s: far less than the transport's own read timeout (60 s) or the peer's stall.
        out = ctrstore(
            nodes.root("d"), "pull", "--no-unpack", "--hosts-dir", str(hd), upstream.ref, timeout=30
        )
        nodes.check("d")
    finally:
        staller.close()
    size = len(upstream.objects[upstream.big])
    m = re.fullmatch(
        rf"{re.escape(staller.url[7:])}, {re.escape(upstream.proxy.host)} from byte (\d+)",
        sources(out)[upstream.big],
    )
    assert m, out
    at = int(m.group(1))  # what had arrived when the peer stalled (the last read is lost)
    assert size // 4 < at <= size // 2
    assert upstream.proxy.sent_by_digest(mark)[upstream.big] == size - at
    ranged = [f for f in upstream.proxy.log()[mark:] if f.path.endswith(upstream.big)]
    assert [f.headers.get("Range") for f in ranged] == [f"bytes={at}-"]


def test_upstream_credentials_never_reach_a_peer(tmp_path: Path, auth_registry: RegistryServer) -> None:
    """The upstream wants a password (htpasswd over TLS, in DOCKER_CONFIG for its host). The
    peer before it has not got the tag and challenges every request for a manifest or blob
    (Bearer, with a token realm of its own): it has no credentials configured, so it gets none
    — no password, no token of the upstream — and, failed, is passed over for the rest of the
    pull, which succeeds from the upstream. (A Basic challenge: ``test_peers.py``.)"""
    reg = auth_registry
    assert reg.username and reg.password and reg.hosts_dir and reg.ca
    docker = tmp_path / "docker"
    docker.mkdir()
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    env = {"DOCKER_CONFIG": str(docker)}
    name = reg.ref("fan/secret:1")
    src = Client(root=tmp_path / "src", state=tmp_path / "src-state")
    try:
        image = build_image(src.content, src.images, name, [tar_from_entries([Entry("s", data=b"s")])])
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DOCKER_CONFIG", str(docker))
            src.push(name, hosts_dir=reg.hosts_dir)
        digests = {i.digest for i in src.content.walk()}
    finally:
        src.close()
    peer = HostileServer("127.0.0.19")
    try:
        peer.on("HEAD", "/v2/fan/secret/manifests/1", reply(404))
        realm = f'Bearer realm="http://{peer.host}/token",service="peer"'
        for d in digests:
            for kind in ("blobs", "manifests"):
                peer.on("GET", f"/v2/fan/secret/{kind}/{d}", reply(401, b"{}", {"WWW-Authenticate": realm}))
        hd = tmp_path / "certs.d"
        (hd / reg.host).mkdir(parents=True)
        shutil.copy(reg.ca, hd / reg.host / "ca.pem")
        (hd / reg.host / "hosts.toml").write_text(
            f'server = "https://{reg.host}"\nca = "ca.pem"\n\n'
            f'[host."http://{peer.host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        node = tmp_path / "node"
        out = ctrstore(node, "pull", "--no-unpack", "--hosts-dir", str(hd), name, env=env)
        seen = peer.requests()
    finally:
        peer.close()
    c = Client(root=node, state=str(node) + "-state")
    try:
        assert c.images.get(name).target.digest == image.target.digest and c.check(name).complete
    finally:
        c.close()
    assert set(sources(out).values()) == {reg.host}, out
    # Asked for the tag and a manifest, its realm for a token (anonymously); then no more.
    assert [r.path.rsplit("/", 1)[-1][:7] for r in seen] == ["1", "sha256:", "token"], seen
    assert not any(r.carries(reg.password) or "Authorization" in r.headers for r in seen), seen


@pytest.mark.root
def test_ctr_pulls_through_the_peers(nodes: Nodes, upstream: Upstream) -> None:
    """containerd reads the same hosts.toml: with a node that has the image as its mirror, it
    resolves and fetches everything there; the upstream sends nothing."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed (apt-get install containerd)")
    nodes.pull("seed", [])
    seed = nodes.serve("seed", "127.0.0.17")
    hd = nodes.hosts("ctr", ["seed"])
    mark = len(upstream.proxy.log())
    cd = Containerd(nodes.tmp / "containerd")
    try:
        p = cd.run("images", "pull", "--hosts-dir", str(hd), upstream.ref, check=False)
        assert p.returncode == 0, p.stderr + p.stdout + cd.log.read_text()[-2000:]
        content = {line.split()[0] for line in cd.run("content", "ls").stdout.splitlines()[1:]}
        assert content == set(upstream.objects)
        cd.run("images", "rm", upstream.ref)
    finally:
        cd.stop()
    assert upstream.proxy.log()[mark:] == []
    lines = seed.wait_lines(
        0, lambda ls: any("containerd" in line and f"/blobs/{upstream.big}" in line for line in ls)
    )
    assert any(
        "containerd" in line and f"/blobs/{upstream.big}" in line and " 200 " in line for line in lines
    )
