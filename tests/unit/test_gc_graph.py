"""gc's mark and sweep on graphs made record by record: rows go straight into a fresh meta.db
(no blob, snapshot or process behind them) and a dry-run collection says which records it
would remove. Roots, reference labels and back-references, flat leases, leases of a gone
owner, and expiry, each on the smallest graph that shows it. (gc over a real store, files and
all: ``test_gc.py``.)"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ctrstore.content.local import LocalStore
from ctrstore.labels import LEASE_OWNER as OWNER_LABEL
from ctrstore.metadata.db import DB, dumps
from ctrstore.metadata.gc import collect

TS = "2024-01-01T00:00:00Z"
PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
ROOT = {"containerd.io/gc.root": TS}


def dg(name: str) -> str:
    """A digest-shaped key, readable in failures."""
    return "sha256:" + name.encode().hex().ljust(64, "0")


class Graph:
    """meta.db rows, written directly (what the stores would have recorded)."""

    def __init__(self, path: Path) -> None:
        self.db = DB(path / "meta.db")
        self.content = LocalStore(path / "content")

    def _run(self, sql: str, *args: object) -> None:
        with self.db.write() as cur:
            DB.ensure_namespace(cur, str(args[0]))
            cur.execute(sql, args)

    def blob(self, name: str, labels: Mapping[str, str] | None = None, ns: str = "default") -> str:
        self._run(
            "INSERT INTO content(namespace, digest, size, labels, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?)",
            ns, dg(name), 1, dumps(dict(labels or {})), TS, TS,
        )  # fmt: skip
        return dg(name)

    def image(
        self, name: str, target: str, labels: Mapping[str, str] | None = None, ns: str = "default"
    ) -> None:
        self._run(
            "INSERT INTO images(namespace, name, target_media_type, target_digest, target_size, labels, "
            "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            ns, name, "application/vnd.oci.image.index.v1+json", target, 1, dumps(dict(labels or {})), TS, TS,
        )  # fmt: skip

    def snapshot(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None, ns: str = "default"
    ) -> None:
        self._run(
            "INSERT INTO snapshots(namespace, snapshotter, key, backend_key, parent, labels, created_at, "
            "updated_at) VALUES (?,?,?,?,?,?,?,?)",
            ns, "overlayfs", key, f"{ns}/1/{key}", parent, dumps(dict(labels or {})), TS, TS,
        )  # fmt: skip

    def container(self, cid: str, snapshot: str, ns: str = "default") -> None:
        self._run(
            "INSERT INTO containers(namespace, id, snapshotter, snapshot_key, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?)",
            ns, cid, "overlayfs", snapshot, TS, TS,
        )  # fmt: skip

    def lease(self, lid: str, *resources: tuple[str, str], labels: Mapping[str, str] | None = None) -> None:
        self._run(
            "INSERT INTO leases(namespace, id, labels, created_at) VALUES (?,?,?,?)",
            "default", lid, dumps(dict(labels or {})), TS,
        )  # fmt: skip
        for typ, rid in resources:
            self._run(
                "INSERT INTO lease_resources(namespace, lease_id, type, id) VALUES (?,?,?,?)",
                "default", lid, typ, rid,
            )  # fmt: skip

    def ingest(self, ref: str, expected: str | None, expires: str) -> None:
        self._run(
            "INSERT INTO ingests(namespace, ref, backend_ref, expected, expires_at) VALUES (?,?,?,?,?)",
            "default", ref, f"default/{ref}", expected, expires,
        )  # fmt: skip

    def swept(self) -> dict[str, set[str]]:
        """What a dry-run gc would remove, by record kind, as ``<namespace>/<key>``."""
        result = collect(self.db, self.content, dry_run=True)
        return {kind: set(keys) for kind, keys in result.records.items() if keys}


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Graph]:
    graph = Graph(tmp_path)
    yield graph
    graph.db.close()


def content(*digests: str, ns: str = "default") -> set[str]:
    return {f"{ns}/{d}" for d in digests}


def test_nothing_rooted_is_all_swept(g: Graph) -> None:
    a, b = g.blob("a"), g.blob("b", {"containerd.io/gc.ref.content": dg("a")})
    g.snapshot("s1")
    assert g.swept() == {"content": content(a, b), "snapshots": {"default/overlayfs/s1"}}


def test_gc_root_label_keeps_the_object_and_what_its_labels_name(g: Graph) -> None:
    leaf = g.blob("leaf")
    mid = g.blob("mid", {"containerd.io/gc.ref.content.l.0": leaf})
    g.blob("top", {**ROOT, "containerd.io/gc.ref.content/m": mid})
    stray = g.blob("stray")
    assert g.swept() == {"content": content(stray)}


def test_image_roots_its_target_chain_and_snapshots(g: Graph) -> None:
    layer = g.blob("layer")
    config = g.blob("config", {"containerd.io/gc.ref.snapshot.overlayfs": "top"})
    manifest = g.blob(
        "manifest",
        {"containerd.io/gc.ref.content.config": config, "containerd.io/gc.ref.content.l.0": layer},
    )
    g.image("img", manifest)
    g.snapshot("bottom")
    g.snapshot("top", parent="bottom")
    g.snapshot("other")
    assert g.swept() == {"snapshots": {"default/overlayfs/other"}}


def test_labels_name_objects_of_their_own_namespace_only(g: Graph) -> None:
    x = g.blob("x", ns="other")
    g.blob("root", {**ROOT, "containerd.io/gc.ref.content": x})  # names default/x: not there
    assert g.swept() == {"content": content(x, ns="other")}


def test_label_prefixes_must_end_at_a_separator(g: Graph) -> None:
    kept, notref = g.blob("kept"), g.blob("notref")
    g.blob("root", {**ROOT, "containerd.io/gc.ref.content.a": kept, "containerd.io/gc.ref.contentx": notref})
    assert g.swept() == {"content": content(notref)}


def test_backreference_keeps_the_labelled_object(g: Graph) -> None:
    target = g.blob("target", ROOT)
    sig = g.blob("sig", {"containerd.io/gc.bref.content": target})
    unsigned = g.blob("unsigned", {"containerd.io/gc.bref.content": dg("nothing-roots-this")})
    assert sig != unsigned
    assert g.swept() == {"content": content(unsigned)}


def test_backreferences_from_snapshots_and_images(g: Graph) -> None:
    g.snapshot("rooted", labels=ROOT)
    side = g.blob("side", {"containerd.io/gc.bref.snapshot.overlayfs": "rooted"})
    target = g.blob("target")
    g.image("img", target)
    note = g.blob("note", {"containerd.io/gc.bref.image": "img"})
    assert side and note
    assert g.swept() == {}


def test_a_container_keeps_its_snapshot_and_parents(g: Graph) -> None:
    g.snapshot("layer")
    g.snapshot("rw", parent="layer")
    g.snapshot("loose")
    g.container("c1", "rw")
    assert g.swept() == {"snapshots": {"default/overlayfs/loose"}}


def test_lease_holds_its_resources_and_their_labels(g: Graph) -> None:
    child = g.blob("child")
    parent = g.blob("parent", {"containerd.io/gc.ref.content": child})
    g.snapshot("held")
    g.lease("l1", ("content", parent), ("snapshots/overlayfs", "held"))
    assert g.swept() == {}


def test_flat_lease_keeps_resources_without_following_labels(g: Graph) -> None:
    child = g.blob("child")
    parent = g.blob("parent", {"containerd.io/gc.ref.content": child})
    g.lease("flat", ("content", parent), labels={"containerd.io/gc.flat": TS})
    assert g.swept() == {"content": content(child)}


def test_flat_lease_does_not_stop_a_full_root_from_following_labels(g: Graph) -> None:
    child = g.blob("child")
    parent = g.blob("parent", {"containerd.io/gc.ref.content": child})
    g.lease("flat", ("content", parent), labels={"containerd.io/gc.flat": TS})
    g.image("img", parent)
    assert g.swept() == {}


def test_expired_lease_and_image_are_not_roots(g: Graph) -> None:
    held, target, fresh = g.blob("held"), g.blob("target"), g.blob("fresh")
    g.lease("old", ("content", held), labels={"containerd.io/gc.expire": PAST})
    g.image("gone", target, {"containerd.io/gc.expire": PAST})
    g.image("later", fresh, {"containerd.io/gc.expire": FUTURE})
    assert g.swept() == {
        "content": content(held, target),
        "leases": {"default/old"},
        "images": {"default/gone"},
    }


def test_unreadable_expiry_never_expires(g: Graph) -> None:
    held = g.blob("held")
    g.lease("odd", ("content", held), labels={"containerd.io/gc.expire": "next tuesday"})
    assert g.swept() == {}


def test_lease_of_a_gone_owner_is_not_a_root(g: Graph) -> None:
    held = g.blob("held")
    g.lease("orphan", ("content", held), labels={OWNER_LABEL: "pid=1,start=0,boot=another-boot,pidns=0"})
    assert g.swept() == {"content": content(held), "leases": {"default/orphan"}}


def test_ingest_keeps_its_expected_blob_until_it_expires(g: Graph) -> None:
    live, stale = g.blob("live"), g.blob("stale")
    g.ingest("fresh", live, FUTURE)
    g.ingest("old", stale, PAST)
    assert g.swept() == {"content": content(stale), "ingests": {"default/old"}}


def test_cycles_end(g: Graph) -> None:
    a = g.blob("a", {"containerd.io/gc.ref.content": dg("b")})
    b = g.blob("b", {"containerd.io/gc.ref.content": a})
    g.blob("loop-1", {"containerd.io/gc.ref.content": dg("loop-2")})
    g.blob("loop-2", {"containerd.io/gc.ref.content": dg("loop-1")})
    g.image("img", b)
    assert g.swept() == {"content": content(dg("loop-1"), dg("loop-2"))}
