"""A store you can trust: leases that keep what they took, leases of dead processes freed, gc
that removes files only after committing, repair of what a crash between the two databases
leaves, stuck ingests, a lost meta.db, and ``ctrstore check``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrstore import AlreadyExists, Client
from ctrstore.labels import LEASE_OWNER as OWNER_LABEL
from ctrstore.metadata.leases import owner_gone, process_owner
from ctrstore.mount import is_mountpoint
from ctrstore.snapshots._base import DirectorySnapshotter

SNAP_REF = "containerd.io/snapshot.ref"


def blobs(client: Client) -> set[str]:
    base = client.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in base.iterdir()}


def cli(
    tmp_path: Path, *args: str, ok: bool = True, root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    env |= {
        "CTRSTORE_ROOT": str(root or tmp_path / "root"),
        "CTRSTORE_STATE": str((root or tmp_path / "root").parent / "state"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore", *args], capture_output=True, text=True, env=env, timeout=120
    )
    if ok:
        assert r.returncode == 0, r.stderr
    return r


# -- 2. leases keep what they took, even when the write finds it there already -------------
def test_already_exists_keeps_the_lease_hold(client: Client) -> None:
    c = client.content
    d = c.ingest("a", b"shared config")  # recorded, but nothing roots it
    client.leases.create("pull")
    leased = c.with_lease("pull")
    with pytest.raises(AlreadyExists):
        leased.writer("b", expected=d)
    assert any(r.id == d for r in client.leases.resources("pull"))
    client.gc()
    assert d in blobs(client), "gc removed a blob the lease took"
    # The same through a commit that finds the namespace holding the blob already.
    w = leased.writer("c")
    w.write(b"second")
    d2 = c.ingest("d", b"second")
    with pytest.raises(AlreadyExists):
        w.commit()
    client.gc()
    assert d2 in blobs(client)


def test_snapshot_ref_already_exists_keeps_the_lease_hold(client: Client) -> None:
    sn = client.snapshotter("native")
    sn.prepare("x", "")
    sn.commit("layer", "x")  # committed, nothing roots it
    client.leases.create("unpack")
    leased = client.metadata.snapshotter("native", "default", lease="unpack")
    with pytest.raises(AlreadyExists):
        leased.prepare("extract-1", "", {SNAP_REF: "layer"})
    sn.prepare("y", "")
    with pytest.raises(AlreadyExists):
        leased.commit("layer", "y")
    client.gc()
    assert sn.stat("layer").name == "layer", "gc removed a snapshot the lease took"


_GC_LOOP = """
import sys, time
from ctrstore import Client
c = Client(root=sys.argv[1], state=sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not __import__("os").path.exists(sys.argv[3]):
    c.gc()
    time.sleep(0.002)
"""


def test_gc_beside_writers_never_removes_what_a_lease_took(client: Client, tmp_path: Path) -> None:
    """A real gc process runs in a loop while this one, again and again, re-creates an
    unrooted blob and takes it under a lease (finding it there, or writing it anew). Whatever
    the interleaving, the blob must stay readable as long as the lease holds it."""
    stop = tmp_path / "stop"
    gc = subprocess.Popen([sys.executable, "-c", _GC_LOOP, str(client.root), str(client.state), str(stop)])
    try:
        data = b"config blob shared by two images"
        found = written = 0
        for i in range(20):
            d = client.content.ingest(f"plain-{i}", data)  # unrooted: the gc may take it any time
            with client.lease():
                try:
                    w = client.content.writer(f"leased-{i}", expected=d, wait=5)
                except AlreadyExists:
                    found += 1
                else:
                    with w:
                        if not w.complete:
                            w.write(data)
                        try:
                            w.commit(len(data), d)
                        except AlreadyExists:
                            pass
                    written += 1
                for _ in range(3):
                    assert client.content.read_bytes(d) == data
                    time.sleep(0.005)
        assert found + written == 20
    finally:
        stop.touch()
        gc.wait(timeout=90)
    assert gc.returncode == 0


# -- 3. a lease belongs to the process that made it -------------------------------------------
_HOLDER = """
import sys, time
from ctrstore import Client
c = Client(root=sys.argv[1], state=sys.argv[2])
with c.lease():
    d = c.content.ingest("whole", b"a blob a killed pull had committed")
    w = c.content.writer("partial", total=100)
    w.write(b"x" * 40)
    w.close()
    sn = c.snapshotter("native")
    sn.prepare("extract-1", "")
    print(d, flush=True)
    time.sleep(120)
"""


def test_a_killed_owners_lease_is_freed_by_gc(client: Client) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(client.root), str(client.state)],
        stdout=subprocess.PIPE,
        text=True,
    ) as p:
        _check_holder(client, p)


def _check_holder(client: Client, p: subprocess.Popen[str]) -> None:
    try:
        assert p.stdout is not None
        d = p.stdout.readline().strip()
        assert d.startswith("sha256:"), d
        (lease,) = client.leases.list()
        assert owner_gone(lease.labels) is False
        client.gc()
        assert d in blobs(client), "gc freed a live process's lease"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert owner_gone(lease.labels) is True
    result = client.gc()
    assert result.records["leases"] == [f"default/{lease.id}"]
    assert d not in blobs(client)
    assert not list(client.snapshotter("native").walk()), "the dead unpack's snapshot stayed"
    # The partial download keeps its own expiry and resumes.
    (st,) = client.content.list_statuses()
    assert (st.ref, st.offset) == ("partial", 40)
    w = client.content.writer("partial", total=100)
    assert w.offset == 40
    w.close()


def test_owner_label_tells_a_reused_pid_and_another_boot() -> None:
    me = process_owner()
    assert owner_gone({OWNER_LABEL: me}) is False
    fields = dict(x.split("=", 1) for x in me.split(","))
    assert owner_gone({OWNER_LABEL: me.replace(f"start={fields['start']}", "start=1")}) is True
    assert owner_gone({OWNER_LABEL: me.replace(f"boot={fields['boot']}", "boot=another")}) is True
    assert owner_gone({OWNER_LABEL: me.replace(f"pidns={fields['pidns']}", "pidns=0")}) is False
    assert owner_gone({}) is False


def test_leases_create_from_the_cli_outlives_the_command(tmp_path: Path) -> None:
    lease = cli(tmp_path, "leases", "create", "--id", "keep").stdout.strip()
    assert lease == "keep"
    cli(tmp_path, "gc")
    assert "keep" in cli(tmp_path, "leases", "ls", "-q").stdout.split()
    assert OWNER_LABEL not in cli(tmp_path, "leases", "ls").stdout


# -- 5./6. files go after the commit; a crash between two steps is repaired -----------------
def test_gc_repairs_a_record_without_its_backend_snapshot(client: Client) -> None:
    """Crash points between meta.db and the snapshotter's metadata.db, built directly."""
    sn = client.snapshotter("native")
    backend = sn.backend
    assert isinstance(backend, DirectorySnapshotter)
    sn.prepare("gone", "", {"containerd.io/gc.root": "x"})
    # (a) the backend snapshot was removed, meta.db's removal never committed.
    backend.remove(sn.backend_key("gone"))
    # (b) a backend snapshot whose meta.db record never committed.
    backend.prepare("default/1/orphan", "")
    # (c) a snapshotter record whose directory is gone (the old remove's rename, then a crash).
    sn.prepare("nodir", "", {"containerd.io/gc.root": "x"})
    with backend.ms.transaction(False) as cur:
        ids = {k: i for i, k in backend.ms.id_map(cur).items()}
    nodir_id = ids[sn.backend_key("nodir")]
    os.rename(backend.root / "snapshots" / nodir_id, backend.root / "snapshots" / f"rm-{nodir_id}")
    # (d) a directory no record names.
    (backend.root / "snapshots" / "999").mkdir()

    report = client.check_store()
    assert not report.ok
    problems = "\n".join(f.problem for f in report.findings)
    assert "gone" in problems and "orphan" in problems and "nodir" in problems and "999" in problems

    result = client.gc()
    assert any("gone" in r for r in result.repaired), result.repaired
    assert {i.name for i in sn.walk()} == set()
    assert sorted(p.name for p in (backend.root / "snapshots").iterdir()) == []
    assert client.check_store().ok
    # The next snapshot works (ids handed out again find no stale directory).
    sn.prepare("again", "")
    assert list(Path(sn.mounts("again")[0].source).iterdir()) == []


def test_a_stale_directory_at_the_next_id_does_not_break_prepare(client: Client) -> None:
    """A crash after the rename into snapshots/<id> but before the record committed leaves a
    directory at an id the sequence hands out again."""
    sn = client.snapshotter("native")
    sn.prepare("a", "")
    backend = sn.backend
    assert isinstance(backend, DirectorySnapshotter)
    with backend.ms.transaction(False) as cur:
        top = max(int(i) for i in backend.ms.id_map(cur))
    stale = backend.root / "snapshots" / str(top + 1)
    stale.mkdir()
    (stale / "junk").write_text("from a crash")
    sn.prepare("b", "")
    assert list(Path(sn.mounts("b")[0].source).iterdir()) == []


def test_blob_committed_without_its_record(client: Client) -> None:
    """A crash between the blob's rename into blobs/ and meta.db's commit."""
    data = b"renamed, never recorded"
    w = client.content.backend.writer("default/x")
    w.write(data)
    d = w.commit()
    assert d in blobs(client)
    assert not client.check_store().ok
    # A writer expecting it records it without writing; else gc removes it.
    assert client.content.ingest("y", data, expected=d) == d
    assert client.check_store().ok
    client.content.delete(d)
    w = client.content.backend.writer("default/z")
    w.write(data)
    w.commit()
    client.gc()
    assert d not in blobs(client)


def test_an_ingest_killed_after_its_blob_was_stored_does_not_pin_it(client: Client) -> None:
    """A writer killed between the blob's rename into blobs/ and meta.db's commit leaves its
    ingest record (with its own expiry) behind. The next writer of that ref finds the blob and
    records it; the old ingest record must go then, or it keeps the blob from gc after the
    image that needed it is removed."""
    data = b"stored by a writer that was killed before its record"
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with client.content.writer("layer-x", total=len(data), expected=d) as w:
        w.write(data)
    # The killed writer's last step that reached the disk: the backend's rename into blobs/.
    client.content.backend.writer("default/layer-x", len(data), d).commit(len(data), d)
    assert [st.ref for st in client.content.list_statuses()] == []
    with client.metadata.db.read() as cur:
        assert cur.execute("SELECT ref FROM ingests").fetchall() == [("layer-x",)]
    assert client.content.ingest("layer-x", data, expected=d) == d
    client.content.delete(d)
    client.gc()
    assert d not in blobs(client)
    assert client.check_store().ok


def test_remove_commits_before_the_directory_goes(client: Client) -> None:
    sn = client.snapshotter("native")
    sn.prepare("k", "")
    backend = sn.backend
    assert isinstance(backend, DirectorySnapshotter)
    bkey = sn.backend_key("k")
    with backend.ms.transaction(False) as cur:
        id_ = {k: i for i, k in backend.ms.id_map(cur).items()}[bkey]
    # The directory is gone already (a gc that failed after the rename): remove still works.
    os.rename(backend.root / "snapshots" / id_, backend.root / "snapshots" / f"rm-{id_}")
    (backend.root / "snapshots" / f"rm-{id_}").rename(backend.root / "elsewhere")
    sn.remove("k")
    assert list(sn.walk()) == []


# -- 7. a stuck ingest ------------------------------------------------------------------------
def test_complete_but_wrong_ingest_starts_over(client: Client) -> None:
    good = b"the right data, 31 bytes long.."
    d = client.content.ingest("probe", good)
    client.content.delete(d)
    w = client.content.writer("stuck", total=len(good), expected=d)
    w.write(b"X" * len(good))
    w.close()
    # With the size known: the Rust writer starts it over when it opens.
    assert client.content.ingest("stuck", good, expected=d, size=len(good)) == d
    client.content.delete(d)
    # Without the size, from a pipe (no seeking back): the first try says it starts over, the
    # retry with the right data succeeds.
    w = client.content.writer("stuck2", expected=d)
    w.write(b"Y" * len(good))
    w.close()
    first = _pipe_ingest(client, "stuck2", d, good)
    assert first.returncode == 1 and "starts over" in first.stderr, first.stderr
    second = _pipe_ingest(client, "stuck2", d, good)
    assert second.returncode == 0, second.stderr
    assert client.content.read_bytes(d) == good


def _pipe_ingest(client: Client, ref: str, d: str, data: bytes) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    env |= {"CTRSTORE_ROOT": str(client.root), "CTRSTORE_STATE": str(client.state)}
    p = subprocess.Popen(
        [sys.executable, "-m", "ctrstore", "content", "ingest", ref, "--expected-digest", d],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=False,
        env=env,
    )
    out, err = p.communicate(data, timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out.decode(), err.decode())


def test_a_gc_that_fails_leaves_no_record_without_its_file(client: Client) -> None:
    """gc removes files only after committing the records that named them: when it fails
    half-way (here a snapshotter that refuses its cleanup), no record names a removed blob."""
    from ctrstore.errdefs import Unavailable
    from ctrstore.metadata.gc import collect

    class Refusing:
        def gc_cleanup(self, keep: set[str], dry_run: bool) -> list[str]:
            raise Unavailable("snapshotter is busy")

    d = client.content.ingest("x", b"garbage, to be collected")
    md = client.metadata
    with pytest.raises(Unavailable):
        collect(md.db, md.content_backend, {"refusing": Refusing()})
    for info in client.content.walk():
        assert client.content.backend.exists(info.digest), f"record {info.digest} without its blob"
    assert client.check_store().ok
    assert d not in blobs(client)


def test_gc_unmounts_the_temporary_mounts_of_a_killed_process(client: Client, tmp_path: Path) -> None:
    """A process killed while a temporary mount (``<root>/tmpmounts``) was up leaves it
    mounted; nothing else would ever unmount it. gc does, and leaves a live process's alone."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ctrstore.mount import Mount, temp_mount\n"
            "with temp_mount([Mount('bind', sys.argv[1], ('ro', 'rbind'))], sys.argv[2]) as d:\n"
            "    print(d, flush=True)\n"
            "    time.sleep(60)\n",
            str(src),
            str(client.root / "tmpmounts"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        mounted = Path(child.stdout.readline().strip())
        assert (mounted / "f").read_text() == "x"
        assert client.gc().mounts == []  # its process is alive: not ours to take
        assert is_mountpoint(mounted)
    finally:
        child.kill()
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()
    assert is_mountpoint(mounted)
    assert client.gc(dry_run=True).mounts == [str(mounted)]
    assert client.gc().mounts == [str(mounted)]
    assert not mounted.exists()
    assert client.gc().empty


def test_gc_repairs_an_ingest_whose_blob_was_stored_but_not_recorded(client: Client) -> None:
    """A write whose data reached blobs/ (and whose ingest directory was removed) while the
    meta.db commit that records the blob did not happen (a full disk at COMMIT, a kill): the
    ingest record, with its own expiry, must not keep the blob from gc."""
    data = b"stored, then the metadata commit failed"
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with client.content.writer("layer-y", total=len(data), expected=d) as w:
        w.write(data)
    client.content.backend.writer("default/layer-y", len(data), d).commit(len(data), d)
    assert d in blobs(client)
    result = client.gc()
    assert any("layer-y" in line for line in result.repaired), result.repaired
    assert d not in blobs(client)
    with client.metadata.db.read() as cur:
        assert cur.execute("SELECT ref FROM ingests").fetchall() == []
    assert client.check_store().ok
