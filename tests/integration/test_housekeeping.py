"""Housekeeping as a docker user expects it, checked against ``du``:

- ``system df`` counts every blob, layer, ingest and volume once: its sizes plus the store's
  own directories are exactly what ``du`` says of the store's data, and each RECLAIMABLE is
  what the matching prune (or gc) then gives back;
- the prune commands free the space they report; ``rmi`` frees its space at once (no ``gc``
  needed), keeps what other images, containers and leases hold, and refuses an image a
  container was made from unless ``-f``;
- ``images import -`` and ``load`` read stdin, ``export -``/``save`` refuse a terminal;
  ``tag``, ``save``, ``load`` and ctr's aliases (``i``, ``c``, ``t``, ``list``, ``remove``);
  ``system info`` and ``version``.
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrstore.cli._prune import docker_size
from ctrstore.client.housekeeping import (
    DiskUsage,
    collect,
    disk_usage,
    prune_images,
    prune_volumes,
    remove_images,
)
from ctrstore.client.info import system_info
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.metadata.leases import Resource
from tests.support.cli import CLI_TIMEOUT, one_line_error, run, store_client, store_env, unique_name
from tests.support.images import BUSYBOX
from tests.support.network import free_subnet

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

IMAGE = BUSYBOX
CONTENT = "io.containerd.content.v1.content"
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
VOLUMES = "io.containerd.volume.v1.local"


# -- measuring ----------------------------------------------------------------------------------


def du(store: Path) -> int:
    """``du -sB1`` of the store's data: blobs and ingests, snapshots, volumes."""
    root = store / "root"
    paths = [p for p in (root / CONTENT, root / OVERLAY / "snapshots", root / VOLUMES) if p.exists()]
    r = subprocess.run(
        ["du", "-scB1", *map(str, paths)], capture_output=True, text=True, check=True, timeout=60
    )
    return int(r.stdout.splitlines()[-1].split()[0])


def layout_bytes(store: Path) -> int:
    """What ``du`` counts that ``system df`` does not: the layout's own directories (content
    root, blobs/, blobs/sha256/, ingest/; snapshots/ and each snapshot's directory and overlay
    work dirs; the volume plugin's root, volumes/ and each namespace's directory)."""
    root = store / "root"
    dirs = [
        root / CONTENT,
        root / CONTENT / "blobs",
        root / CONTENT / "blobs" / "sha256",
        root / CONTENT / "ingest",
    ]
    snaps = root / OVERLAY / "snapshots"
    dirs.append(snaps)
    for d in snaps.iterdir() if snaps.exists() else []:
        dirs += [d, d / "work", d / "work" / "work"]
    vols = root / VOLUMES / "volumes"
    dirs += [root / VOLUMES, vols, *(vols.iterdir() if vols.exists() else [])]
    return sum(os.lstat(d).st_blocks * 512 for d in dirs if d.exists())


def df(store: Path) -> DiskUsage:
    c = store_client(store)
    try:
        return disk_usage(c, verbose=True)
    finally:
        c.close()


def assert_adds_up(store: Path) -> DiskUsage:
    """system df's sizes plus the layout's directories are du's number, to the byte."""
    got = df(store)
    assert du(store) == got.total + layout_bytes(store), got.to_json()
    return got


def reclaimed(out: str) -> str:
    m = re.search(r"^Total reclaimed space: (\S+)$", out, re.M)
    assert m, out
    return m.group(1)


def derived_image(store: Path, name: str, extra: list[Entry], spec: ImageSpec | None = None) -> None:
    """Image ``name``: busybox's layers plus a layer of ``extra`` entries."""
    c = store_client(store)
    try:
        layers = []
        for d in c.resolve(BUSYBOX).layers:
            with c.content.open(d.digest) as f:
                layers.append(gzip.decompress(f.read()))
        build_image(c.content, c.images, name, [*layers, tar_from_entries(extra)], spec or ImageSpec())
    finally:
        c.close()


def wait_for(pred: object, timeout: float = 20) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def snapshot_dirs(store: Path) -> list[str]:
    return sorted(os.listdir(store / "root" / OVERLAY / "snapshots"))


def blob_files(store: Path) -> list[str]:
    return sorted(os.listdir(store / "root" / CONTENT / "blobs" / "sha256"))


# -- system df and prune ------------------------------------------------------------------------


def test_df_adds_up_and_prunes_return_what_it_reports(busybox_store: Path) -> None:
    store = busybox_store
    # Another image sharing busybox's layers, with 2 MiB of its own; removed without gc, its
    # own layer and blobs are garbage.
    derived_image(store, "localhost/big:1", [Entry("big", data=os.urandom(2 << 20))])
    run(store, "rmi", "--no-prune", "localhost/big:1")
    # A running container with 1 MiB in its writable layer and 1 MiB in a named volume; a
    # stopped one with 512 KiB, and an anonymous volume.
    web, done = unique_name("web"), unique_name("done")
    script = (
        "head -c 1048576 /dev/urandom > /rw; head -c 1048576 /dev/urandom > /v/f; touch /ready; sleep 1000"
    )
    run(store, "run", "-d", "--name", web, "-v", "vol:/v", IMAGE, "sh", "-c", script)
    wait_for(lambda: run(store, "exec", web, "test", "-e", "/ready", ok=False).returncode == 0)
    run(store, "run", "--name", done, "-v", "/anon", IMAGE, "sh", "-c", "head -c 524288 /dev/urandom > /rw2")
    # A blob held by a lease only.
    c = store_client(store)
    try:
        with c.lease(keep=True) as lease:
            c.content.ingest("leased", os.urandom(100_000))
    finally:
        c.close()

    d0 = assert_adds_up(store)
    rows = {r.type: r for r in d0.rows}
    assert (rows["Images"].total, rows["Images"].active, rows["Images"].reclaimable) == (1, 1, 0)
    assert (rows["Containers"].total, rows["Containers"].active) == (2, 1)
    assert 512 * 1024 <= rows["Containers"].reclaimable < rows["Containers"].size
    assert rows["Containers"].size >= (1 << 20) + 512 * 1024
    assert (rows["Local Volumes"].total, rows["Local Volumes"].active, rows["Local Volumes"].reclaimable) == (
        2,
        2,
        0,
    )
    assert rows["Local Volumes"].size >= 1 << 20
    kinds = {r["Kind"]: r for r in d0.other_rows}
    assert kinds["leases"]["Size"] >= 100_000 and kinds["garbage"]["Size"] >= 2 << 20
    assert rows["Other"].reclaimable == kinds["garbage"]["Size"]
    # The CLI prints the same numbers.
    out = run(store, "system", "df").stdout
    images_line = next(line for line in out.splitlines() if line.startswith("Images"))
    assert docker_size(rows["Images"].size) in images_line

    # gc gives back exactly Other's RECLAIMABLE; du drops by at least as much.
    before = du(store)
    c = store_client(store)
    try:
        _, freed = collect(c)
    finally:
        c.close()
    assert freed == d0.other.reclaimable
    assert before - du(store) >= freed
    d1 = assert_adds_up(store)
    assert d1.total == d0.total - freed and d1.other.reclaimable == 0

    # container prune (through the CLI): the stopped container's layer, as df said.
    before = du(store)
    out = run(store, "container", "prune", "-f").stdout
    assert out.startswith(f"Deleted Containers:\n{done}\n")
    assert reclaimed(out) == docker_size(d1.containers.reclaimable)
    d2 = assert_adds_up(store)
    assert d2.total == d1.total - d1.containers.reclaimable
    assert before - du(store) >= d1.containers.reclaimable
    assert d2.containers.total == 1 and d2.containers.reclaimable == 0
    # Its anonymous volume is unused now.
    assert d2.volumes.active == 1 and d2.volumes.reclaimable > 0

    # image prune -a: nothing while web uses busybox; everything once it is gone.
    c = store_client(store)
    try:
        assert prune_images(c, all=True).deleted == []
        c.containers.delete(web, force=True)
        d3 = disk_usage(c)
        assert d3.images.reclaimable == d3.images.size > 0
        before = du(store)
        r = prune_images(c, all=True)
        assert r.deleted == [IMAGE]
        # The image, and web's writable layer gc took with it.
        assert r.space_reclaimed == d3.images.size + d3.containers.size
        assert before - du(store) >= r.space_reclaimed
        # volume prune: anonymous ones only, then -a.
        d4 = disk_usage(c, verbose=True)
        anon = [v for v in d4.volume_rows if v["Anonymous"]]
        r = prune_volumes(c)
        assert r.deleted == [anon[0]["Name"]] and r.space_reclaimed == anon[0]["Size"]
        r = prune_volumes(c, all=True)
        assert r.deleted == ["vol"] and r.space_reclaimed >= 1 << 20
        c.leases.delete(lease.id)
    finally:
        c.close()
    d5 = assert_adds_up(store)
    assert d5.images.total == d5.containers.total == d5.volumes.total == 0
    assert d5.other.size == d5.other.reclaimable  # the lease's blob, now garbage
    assert reclaimed(run(store, "system", "prune", "-f").stdout) == docker_size(d5.other.size)
    assert blob_files(store) == [] and snapshot_dirs(store) == []
    assert assert_adds_up(store).total == 0


def test_system_prune_removes_what_it_lists(busybox_store: Path) -> None:
    store = busybox_store
    stopped = unique_name("stopped")
    run(store, "run", "--name", stopped, "-v", "/anon", "-v", "named:/n", IMAGE, "true")
    run(store, "tag", IMAGE, "localhost/busybox@sha256:" + "0" * 64)
    unused = unique_name("net")
    run(store, "network", "create", "--subnet", str(free_subnet()), unused)
    # Without -f it asks; anything but y keeps everything.
    r = run(store, "system", "prune", "--volumes", stdin=b"n\n", ok=False)
    one_line_error(
        subprocess.CompletedProcess(r.args, r.returncode, r.stdout, r.stderr.split("[y/N] ", 1)[1]),
        "aborted",
        "nothing removed",
    )
    assert "all stopped containers" in r.stderr and "all dangling images" in r.stderr
    assert "all networks not used by at least one container" in r.stderr
    assert run(store, "ps", "-aq").stdout.strip() == stopped
    out = run(store, "system", "prune", "--volumes", stdin=b"y\n").stdout
    assert f"Deleted Containers:\n{stopped}\n" in out
    assert f"Deleted Networks:\n{unused}\n" in out and unused not in run(store, "network", "ls").stdout
    assert "Deleted Images:\nlocalhost/busybox@sha256:" in out
    assert "Deleted Volumes:\n" in out and "named" not in out  # named volumes stay
    assert run(store, "ps", "-aq").stdout == ""
    assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == f"{IMAGE}\n"  # tagged: not dangling
    assert run(store, "volume", "ls", "-q").stdout == "named\n"
    # -a: every unused image; its space comes back.
    out = run(store, "system", "prune", "-a", "-f").stdout
    assert f"Deleted Images:\n{IMAGE}\n" in out and reclaimed(out).endswith("MB")
    assert blob_files(store) == [] and snapshot_dirs(store) == []


# -- rmi ------------------------------------------------------------------------------------------


def test_rmi_frees_space_at_once(busybox_store: Path) -> None:
    store = busybox_store
    run(store, "images", "unpack", IMAGE)
    assert len(snapshot_dirs(store)) == 3
    d0 = assert_adds_up(store)
    before = du(store)
    r = run(store, "rmi", IMAGE)
    assert r.stdout == f"{IMAGE}\n"
    assert reclaimed(r.stderr) == docker_size(d0.total)
    # No gc was run by hand: the blobs and layers are gone already.
    assert blob_files(store) == [] and snapshot_dirs(store) == []
    assert before - du(store) >= d0.total >= 3_000_000
    assert assert_adds_up(store).total == 0
    assert "frees" in run(store, "rmi", "--help").stdout.replace("\n", " ")


def test_rmi_keeps_what_others_hold(busybox_store: Path) -> None:
    store = busybox_store
    run(store, "images", "unpack", IMAGE)
    run(store, "tag", IMAGE, "localhost/copy:1")
    blobs, snaps = blob_files(store), snapshot_dirs(store)
    assert len(blobs) == 6 and len(snaps) == 3
    r = run(store, "rmi", IMAGE)
    assert reclaimed(r.stderr) == "0B"
    assert (blob_files(store), snapshot_dirs(store)) == (blobs, snaps)
    assert re.search(r"localhost/copy:1\s+complete\s+yes", run(store, "images", "check").stdout)
    assert run(store, "run", "--rm", "localhost/copy:1", "cat", "/data/hello.txt").stdout.startswith("hello")
    # A lease holding the image's layer blobs keeps them from rmi's gc too (the index,
    # manifest and config go, and the unpacked layers the config held).
    c = store_client(store)
    try:
        layers = [d.digest for d in c.resolve("localhost/copy:1").layers]
        lease = c.leases.create()
        for d in layers:
            c.leases.add_resource(lease.id, Resource("content", d))
        rep = remove_images(c, ["localhost/copy:1"])
        assert rep.untagged == ["localhost/copy:1"]
        assert blob_files(store) == sorted(d.removeprefix("sha256:") for d in layers)
        assert snapshot_dirs(store) == []
        assert rep.space_reclaimed >= 2_000_000  # the unpacked layers
        c.leases.delete(lease.id)
        c.gc()
    finally:
        c.close()
    assert blob_files(store) == []


def test_rmi_refuses_an_image_in_use(busybox_store: Path) -> None:
    store = busybox_store
    user = unique_name("user")
    run(store, "create", "--name", user, IMAGE, "cat", "/data/hello.txt")
    run(store, "tag", IMAGE, "localhost/other:1")
    blobs = blob_files(store)
    for names in ([IMAGE], ["localhost/other:1", IMAGE]):
        r = run(store, "rmi", *names, ok=False)
        one_line_error(r, "failed precondition", IMAGE, user, "rmi -f")
    # Nothing was removed, not even the unused name given with it.
    listed = run(store, "images", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(listed) == sorted([IMAGE, "localhost/other:1"])
    assert blob_files(store) == blobs
    # -f removes the name; the container keeps its layers and still runs.
    run(store, "rmi", "-f", IMAGE, "localhost/other:1")
    assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == ""
    assert blob_files(store) == [] and len(snapshot_dirs(store)) == 4  # 3 layers + the container's
    assert run(store, "start", "-a", user).stdout == "hello from a ctrstore image\n"
    run(store, "rm", user)
    run(store, "gc")
    assert snapshot_dirs(store) == []


def test_rmi_takes_what_images_q_prints(busybox_store: Path) -> None:
    """docker's rmi takes an image ID, or a unique prefix of it, as ``images -q`` prints it:
    one function (``ImageStore.lookup``, through ``housekeeping.image_names``) finds images
    for rmi, inspect and the API's ``images.get``."""
    store = busybox_store
    [image_id] = run(store, "images", "-q").stdout.split()
    assert run(store, "inspect", "--type", "image", "-f", "{{.Id}}", image_id).stdout.strip()
    # An ID naming an image of two names removes both, and only with -f (docker's rule).
    run(store, "tag", IMAGE, "localhost/other:1")
    assert run(store, "images", "-q").stdout.split() == [image_id, image_id]
    r = run(store, "rmi", image_id, ok=False)
    one_line_error(r, "failed precondition", image_id, IMAGE, "localhost/other:1", "rmi -f")
    assert run(store, "rmi", "localhost/other:1").stdout == "localhost/other:1\n"
    # A container made from the image by its ID prefix holds the image by its name.
    user = unique_name("user")
    run(store, "create", "--name", user, image_id[:6], "true")
    r = run(store, "rmi", image_id, ok=False)
    one_line_error(r, "failed precondition", IMAGE, user)
    run(store, "rm", user)
    c = store_client(store)
    try:
        assert c.images.get(image_id[:5]).name == IMAGE  # the API's images.get too
    finally:
        c.close()
    r = run(store, "rmi", f"sha256:{image_id}")
    assert r.stdout == f"{IMAGE}\n" and reclaimed(r.stderr) != "0B"
    assert run(store, "images", "-q").stdout == ""
    one_line_error(run(store, "rmi", image_id, ok=False), "not found", image_id)


def test_image_prune_takes_dangling_images_only(busybox_store: Path) -> None:
    store = busybox_store
    digest_name = "localhost/busybox@sha256:" + "1" * 64
    run(store, "tag", IMAGE, digest_name)
    out = run(store, "image", "prune", "-f").stdout
    assert out.startswith(f"Deleted Images:\n{digest_name}\n") and reclaimed(out) == "0B"
    assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == f"{IMAGE}\n"
    # -a with a container made from it: kept.
    user = unique_name("user")
    run(store, "create", "--name", user, IMAGE, "true")
    assert reclaimed(run(store, "image", "prune", "-a", "-f").stdout) == "0B"
    assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == f"{IMAGE}\n"
    # A filter that matches nothing removes nothing.
    run(store, "rm", user)
    out = run(store, "image", "prune", "-a", "-f", "--filter", "label=nope").stdout
    assert (
        reclaimed(out) == "0B" and run(store, "images", "ls", "--format", "{{.Name}}").stdout == f"{IMAGE}\n"
    )
    one_line_error(
        run(store, "image", "prune", "-f", "--filter", "color=red", ok=False), "invalid argument", "color"
    )


# -- archives on stdin and stdout ----------------------------------------------------------------


def test_import_from_stdin_and_terminals_refused(busybox_store: Path, tmp_path: Path) -> None:
    store = busybox_store
    archive = run(store, "save", IMAGE).stdout.encode("latin-1")
    run(store, "rmi", IMAGE)
    assert run(store, "load", stdin=archive).stdout == f"Loaded image: {IMAGE}\n"
    run(store, "rmi", IMAGE)
    assert run(store, "images", "import", "-", stdin=archive).stdout.startswith(f"{IMAGE}  sha256:")
    # A regular file on stdin is read in place.
    path = tmp_path / "busybox.tar"
    path.write_bytes(archive)
    run(store, "rmi", IMAGE)
    with open(path, "rb") as f:
        r = subprocess.run(
            [sys.executable, "-m", "ctrstore", "load"],
            stdin=f,
            capture_output=True,
            text=True,
            env=store_env(store),
            timeout=CLI_TIMEOUT,
        )
    assert (r.returncode, r.stdout) == (0, f"Loaded image: {IMAGE}\n"), r.stderr
    assert not [p for p in (store / "root").iterdir() if p.name.startswith(".import-")]
    # save -o, load -i.
    run(store, "save", "-o", str(tmp_path / "out.tar"), IMAGE)
    run(store, "rmi", IMAGE)
    assert run(store, "load", "-i", str(tmp_path / "out.tar")).stdout == f"Loaded image: {IMAGE}\n"
    # A terminal is refused, for writing and for reading.
    for args in (["images", "export", "-", IMAGE], ["save", IMAGE], ["images", "import", "-"], ["load"]):
        main, sub = pty.openpty()
        try:
            r = subprocess.run(
                [sys.executable, "-m", "ctrstore", *args],
                stdin=sub,
                stdout=sub,
                stderr=subprocess.PIPE,
                text=True,
                env=store_env(store),
                timeout=CLI_TIMEOUT,
            )
        finally:
            os.close(sub)
            os.close(main)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("ctrstore: invalid argument: refusing to ") and "terminal" in r.stderr


# -- names, info, version --------------------------------------------------------------------------


def test_ctr_aliases_and_docker_names(busybox_store: Path) -> None:
    store = busybox_store
    stable = ("--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}")  # not CREATED: it moves
    listing = run(store, "images", "ls", *stable).stdout
    assert listing.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE", *listing.split()[5:]]
    for args in (["i", "ls"], ["images", "list"], ["image", "list"]):
        assert run(store, *args, *stable).stdout == listing
    web = unique_name("web")
    run(store, "run", "-d", "--name", web, IMAGE, "sleep", "1000")
    assert run(store, "c", "list", "-q").stdout.strip() == web
    assert run(store, "container", "ls", "-q").stdout.strip() == web
    tasks = run(store, "t", "ls").stdout.splitlines()
    assert tasks[0].split() == ["TASK", "PID", "STATUS"] and tasks[1].split()[::2] == [web, "RUNNING"]
    run(store, "tasks", "kill", "-s", "KILL", web)
    wait_for(lambda: web not in run(store, "ps", "-q").stdout)
    assert run(store, "t", "ls").stdout.splitlines()[1].split()[::2] == [web, "STOPPED"]  # ctr's word
    run(store, "c", "del", web)
    run(store, "tag", IMAGE, "localhost/x:1")
    run(store, "i", "remove", "localhost/x:1")
    run(store, "volume", "create", "v1")
    assert run(store, "volume", "list", "-q").stdout == "v1\n"
    run(store, "volume", "remove", "v1")
    assert run(store, "volume", "list", "-q").stdout == ""
    help_text = run(store, "--help").stdout
    for name in ("system", "volume", "save", "load", "tag", "info", "version"):
        assert re.search(rf"^\s+{name}\s", help_text, re.M), name


def test_info_and_version(busybox_store: Path) -> None:
    store = busybox_store
    run(store, "volume", "create", "v1")
    user = unique_name("user")
    run(store, "create", "--name", user, IMAGE, "true")
    out = run(store, "info").stdout
    assert out == run(store, "system", "info").stdout
    for line in (
        " Containers: 1",
        "  Stopped: 1",
        " Images: 1",
        " Volumes: 1",
        " Storage Driver: overlayfs",
        f" Root Dir: {store / 'root'}",
        f" State Dir: {store / 'state'}",
        "  Volume: local",
        "  io.containerd.volume.v1.local: ok",
        " Metadata Schema Version: 2",
    ):
        assert line in out.splitlines(), (line, out)
    assert re.search(r"^ Default Runtime: runc \(/\S+runc, version \S+\)$", out, re.M), out
    c = store_client(store)
    try:
        doc = system_info(c).to_json()
    finally:
        c.close()
    assert (doc["Containers"], doc["ContainersStopped"], doc["Images"], doc["Volumes"]) == (1, 1, 1, 1)
    assert doc["Driver"] == "overlayfs" and doc["Plugins"]["Volume"] == ["local"]
    assert json.dumps(doc)  # plain JSON
    out = run(store, "version").stdout
    assert re.search(r"^ Version:\s+\d+\.\d+\.\d+", out, re.M) and "runc:" in out
    # --format, as docker's: json (one line) or a Go template over docker's fields.
    assert json.loads(run(store, "info", "--format", "json").stdout)["Volumes"] == 1
    assert run(store, "system", "info", "-f", "{{.Driver}} {{.ContainersStopped}}").stdout == "overlayfs 1\n"
    v = json.loads(run(store, "version", "--format", "{{json .}}").stdout)
    assert set(v) == {"Client", "Server"} and re.fullmatch(r"\d+\.\d+\.\d+", v["Client"]["Version"])
    assert run(store, "version", "-f", "{{.Client.Version}}").stdout.strip() == v["Client"]["Version"]
    one_line_error(run(store, "info", "--format", "table {{.Driver}}", ok=False), "invalid argument", "table")


def test_system_df_format(busybox_store: Path) -> None:
    """``system df --format '{{json .}}'``: docker's fields (``Type``, ``TotalCount``,
    ``Active``, ``Size``, ``Reclaimable``) as docker prints them; ``-v --format json`` the
    whole usage, sizes in bytes."""
    store = busybox_store
    run(store, "volume", "create", "v1")
    du = df(store)
    lines = run(store, "system", "df", "--format", "{{json .}}").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["Type"] for r in rows] == ["Images", "Containers", "Local Volumes", "Other"]
    images = rows[0]
    assert set(images) == {"Type", "TotalCount", "Active", "Size", "Reclaimable"}
    assert (images["TotalCount"], images["Active"], images["Size"]) == ("1", "0", docker_size(du.images.size))
    assert images["Reclaimable"] == f"{docker_size(du.images.reclaimable)} (100%)"
    assert rows[2]["TotalCount"] == "1"
    assert run(store, "system", "df", "--format", "json").stdout.splitlines() == lines
    out = run(store, "system", "df", "--format", "table {{.Type}}\t{{.TotalCount}}").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL"] and out[1].split() == ["Images", "1"]
    table = run(store, "system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    verbose = json.loads(run(store, "system", "df", "-v", "--format", "json").stdout)
    assert verbose == du_json(store)
    assert [i["Repository"] for i in verbose["Images"]] == [IMAGE.rpartition(":")[0]]
    assert verbose["Summary"][0]["Size"] == du.images.size
    assert run(store, "system", "df", "-v", "--format", "{{len .Volumes}}").stdout == "1\n"


def du_json(store: Path) -> dict[str, object]:
    c = store_client(store)
    try:
        return disk_usage(c, verbose=True).to_json()
    finally:
        c.close()
