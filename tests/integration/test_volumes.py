"""Named and anonymous volumes through the command line, as a docker user types them:
``run -v NAME:/path`` (created on first use, filled from the image's files at that path),
``-v /path`` and an image's ``Volumes`` (anonymous, removed by ``rm -v`` and ``run --rm``),
``volume create|ls|inspect|rm|prune``; a volume in use cannot be removed; the copy from the
image cannot be led outside the image or the volume.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from tests.support.cli import CLI_TIMEOUT, one_line_error, run, store_client, store_env, unique_name
from tests.support.images import BUSYBOX

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

IMAGE = BUSYBOX
VOLUMES = "io.containerd.volume.v1.local/volumes/default"


def vol_dir(store: Path, name: str) -> Path:
    return store / "root" / VOLUMES / name


def volume_names(store: Path) -> list[str]:
    return run(store, "volume", "ls", "-q").stdout.split()


def test_named_volume_persists_and_is_filled_from_the_image(busybox_store: Path) -> None:
    store = busybox_store
    # First use: created, and filled with the image's /data (hello.txt) since it is empty.
    r = run(
        store,
        "run",
        "--rm",
        "-v",
        "data1:/data",
        IMAGE,
        "sh",
        "-c",
        "cat /data/hello.txt; echo one > /data/new",
    )
    assert r.stdout == "hello from a ctrstore image\n"
    assert volume_names(store) == ["data1"]
    data = vol_dir(store, "data1") / "_data"
    assert (data / "new").read_text() == "one\n"
    assert (data / "hello.txt").read_text() == "hello from a ctrstore image\n"
    # The next container sees what the first wrote; the copy is not made again (the image's
    # file, deleted in the volume, stays deleted).
    r = run(store, "run", "--rm", "-v", "data1:/data", IMAGE, "sh", "-c", "cat /data/new; rm /data/hello.txt")
    assert r.stdout == "one\n"
    r = run(store, "run", "--rm", "-v", "data1:/data:ro", IMAGE, "ls", "/data")
    assert r.stdout.split() == ["new"]
    # ro is read-only.
    r = run(store, "run", "--rm", "-v", "data1:/data:ro", IMAGE, "sh", "-c", "echo x > /data/y", ok=False)
    assert r.returncode != 0
    # --mount type=volume, and a path the image does not have: an empty volume.
    run(
        store,
        "run",
        "--rm",
        "--mount",
        "type=volume,src=other,dst=/srv/x",
        IMAGE,
        "sh",
        "-c",
        "echo 2 > /srv/x/f",
    )
    assert (vol_dir(store, "other") / "_data" / "f").read_text() == "2\n"
    # nocopy: the image's files are not copied.
    run(store, "run", "--rm", "-v", "bare:/data:nocopy", IMAGE, "true")
    assert os.listdir(vol_dir(store, "bare") / "_data") == []

    [doc] = json.loads(run(store, "volume", "inspect", "data1").stdout)
    assert doc["Name"] == "data1" and doc["Driver"] == "local" and doc["Mountpoint"] == str(data)
    assert doc["UsedBy"] == []
    run(store, "volume", "rm", "data1", "other", "bare")
    assert volume_names(store) == []
    assert not vol_dir(store, "data1").exists()


def test_volume_in_use_is_refused(busybox_store: Path) -> None:
    store = busybox_store
    user = unique_name("user")
    run(store, "volume", "create", "--label", "team=a", "keep")
    run(store, "create", "--name", user, "-v", "keep:/k", IMAGE, "true")
    line = one_line_error(run(store, "volume", "rm", "keep", ok=False), "failed precondition", "keep", user)
    assert "in use" in line
    assert volume_names(store) == ["keep"]
    # prune -a leaves it too (in use), ls shows it not dangling.
    run(store, "volume", "prune", "-a", "-f")
    assert volume_names(store) == ["keep"]
    assert run(store, "volume", "ls", "-q", "--filter", "dangling=true").stdout == ""
    assert run(store, "volume", "ls", "-q", "--filter", "label=team=a").stdout == "keep\n"
    [doc] = json.loads(run(store, "volume", "inspect", "keep").stdout)
    assert doc["UsedBy"] == [user] and doc["Labels"] == {"team": "a"}
    # rm without -v keeps named volumes; then the volume can go.
    run(store, "rm", "-v", user)
    assert volume_names(store) == ["keep"]
    run(store, "volume", "rm", "keep")
    assert volume_names(store) == []
    one_line_error(run(store, "volume", "rm", "keep", ok=False), "not found", "keep")
    assert run(store, "volume", "rm", "-f", "keep").returncode == 0
    one_line_error(run(store, "volume", "create", "a b", ok=False), "invalid argument", "volume name")


def derived_image(store: Path, name: str, extra: list[Entry], spec: ImageSpec) -> None:
    """Image ``name``: busybox's layers plus one layer of ``extra`` entries, with ``spec``."""
    c = store_client(store)
    try:
        layers = []
        for d in c.resolve(BUSYBOX).layers:
            with c.content.open(d.digest) as f:
                layers.append(gzip.decompress(f.read()))
        build_image(c.content, c.images, name, [*layers, tar_from_entries(extra)], spec)
    finally:
        c.close()


def test_anonymous_volumes(busybox_store: Path) -> None:
    store = busybox_store
    image = "localhost/withvols:1"
    cache = [Entry("cache", "dir"), Entry("cache/seed", data=b"seeded\n", mode=0o640, uid=1000, gid=1000)]
    derived_image(store, image, cache, ImageSpec(cmd=("sh",), volumes=("/cache", "/empty")))
    a = unique_name("anon")
    run(store, "run", "-d", "--name", a, image, "sleep", "1000")
    anon = volume_names(store)
    assert len(anon) == 2 and all(len(n) == 64 for n in anon)
    # /cache was copied up from the image, owner and mode kept.
    seeds = [
        vol_dir(store, n) / "_data" / "seed" for n in anon if (vol_dir(store, n) / "_data" / "seed").exists()
    ]
    assert len(seeds) == 1
    st = seeds[0].stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o640)
    assert run(store, "exec", a, "cat", "/cache/seed").stdout == "seeded\n"
    # -v on an image volume's path replaces the anonymous one.
    b = unique_name("named")
    run(store, "create", "--name", b, "-v", "mine:/cache", image, "true")
    added = set(volume_names(store)) - set(anon)
    assert "mine" in added and len(added) == 2  # mine, and one anonymous for /empty
    # rm -v removes the anonymous volumes made for the container, not named ones.
    run(store, "rm", "-v", b)
    assert set(volume_names(store)) == {*anon, "mine"}
    # rm without -v leaves them; volume prune (anonymous only) takes them once unused.
    run(store, "rm", "-f", a)
    assert set(volume_names(store)) == {*anon, "mine"}
    out = run(store, "volume", "prune", "-f").stdout
    assert "Deleted Volumes:" in out and all(n in out for n in anon) and "mine" not in out
    assert volume_names(store) == ["mine"]
    # run --rm removes its anonymous volumes as the container goes.
    run(store, "run", "--rm", "-v", "/scratch", image, "true")
    assert volume_names(store) == ["mine"]
    run(store, "volume", "prune", "-a", "-f")
    assert volume_names(store) == []
    assert os.listdir(store / "root" / VOLUMES) == []


def test_copy_up_stays_inside_the_image(busybox_store: Path) -> None:
    """An image whose volume path is a symlink to the host's /etc, and whose files there are
    symlinks out: the copy resolves the path inside the image and copies symlinks as symlinks,
    so no host file reaches the volume."""
    store = busybox_store
    derived_image(
        store,
        "localhost/evil:1",
        [
            Entry("srv", "dir"),
            Entry("srv/inner", "dir"),
            Entry("srv/inner/passwd", "symlink", link="/etc/shadow"),
            Entry("srv/inner/up", "symlink", link="../../../../../../etc"),
            Entry("srv/inner/file", data=b"mine\n"),
            Entry("srv/inner/link", "hardlink", link="srv/inner/file"),
            Entry("data", "symlink", link="/srv/inner"),
            Entry("conf", "symlink", link="../../etc"),
        ],
        ImageSpec(cmd=("sh",)),
    )
    run(store, "run", "--rm", "-v", "vv:/data", "localhost/evil:1", "true")
    data = vol_dir(store, "vv") / "_data"
    assert sorted(os.listdir(data)) == ["file", "link", "passwd", "up"]
    assert os.readlink(data / "passwd") == "/etc/shadow"
    assert os.readlink(data / "up") == "../../../../../../etc"
    assert (data / "file").read_text() == "mine\n"
    assert os.stat(data / "file").st_ino == os.stat(data / "link").st_ino
    # conf -> ../../etc is the image's /etc, not the host's. The volume ends up mounted on the
    # container's /etc, so the mount points of /etc/hosts and /etc/resolv.conf (made even with
    # --network none, as docker does) join the image's files; nothing else of the host's does.
    run(store, "run", "--rm", "--network", "none", "-v", "conf:/conf", "localhost/evil:1", "true")
    conf = vol_dir(store, "conf") / "_data"
    assert set(os.listdir(conf)) - {"hosts", "resolv.conf"} == {"group", "hostname", "passwd"}
    assert (conf / "passwd").read_bytes() != Path("/etc/passwd").read_bytes()
    run(store, "volume", "rm", "vv", "conf")


def test_volumes_in_the_output_machinery(busybox_store: Path) -> None:
    """``volume ls`` and ``volume inspect`` take ``--format`` as docker's do (docker's field
    names), ``ctrstore inspect`` finds volumes (``--type volume``), and the shell completes
    volume names."""
    store = busybox_store
    run(store, "volume", "create", "--label", "team=a", "keep")
    user = unique_name("user")
    run(store, "create", "--name", user, "-v", "keep:/data", IMAGE, "true")
    run(store, "volume", "create", "spare")
    # docker volume ls --format json: one object a line, docker's fields, strings.
    rows = [json.loads(line) for line in run(store, "volume", "ls", "--format", "json").stdout.splitlines()]
    assert sorted(rows[0]) == [
        "Availability", "Driver", "Group", "Labels", "Links", "Mountpoint", "Name", "Scope", "Size", "Status",
    ]  # fmt: skip
    by_name = {r["Name"]: r for r in rows}
    keep, spare = by_name["keep"], by_name["spare"]
    assert (keep["Labels"], keep["Links"], spare["Links"], spare["Size"]) == ("team=a", "1", "0", "N/A")
    assert keep["Mountpoint"] == str(vol_dir(store, "keep") / "_data")
    out = run(store, "volume", "ls", "--format", "{{.Name}}\t{{.Size}}", "-f", "name=keep").stdout
    name, size = out.rstrip("\n").split("\t")
    assert name == "keep" and size.endswith("B") and size != "N/A"  # measured, as docker prints sizes
    table = run(store, "volume", "ls", "--format", "table {{.Name}}\t{{.Links}}").stdout.splitlines()
    assert table[0].split() == ["VOLUME", "NAME", "LINKS"] and table[1].split() == ["keep", "1"]
    assert run(store, "volume", "ls", "-q").stdout.split() == ["keep", "spare"]
    # docker volume inspect: the JSON list, or each volume through a template.
    [doc] = json.loads(run(store, "volume", "inspect", "keep").stdout)
    assert {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"} <= set(doc)
    assert doc["UsedBy"] == [user] and doc["Labels"] == {"team": "a"}
    tmpl = '{{.Name}} {{.Driver}} {{index .Labels "team"}} {{len .UsedBy}}'
    assert (
        run(store, "volume", "inspect", "-f", tmpl, "keep", "spare").stdout
        == "keep local a 1\nspare local  0\n"
    )
    [sized] = json.loads(run(store, "volume", "inspect", "--size", "spare").stdout)
    assert sized["Size"] >= 0
    r = run(store, "volume", "inspect", "keep", "nothere", ok=False)
    assert json.loads(r.stdout)[0]["Name"] == "keep" and "no such volume: nothere" in r.stderr
    # ctrstore inspect: a volume is found by name, or only volumes with --type volume.
    assert run(store, "inspect", "-f", "{{.Mountpoint}}", "keep").stdout.strip() == doc["Mountpoint"]
    assert run(store, "inspect", "--type", "volume", "-f", "{{.Name}}", "spare").stdout == "spare\n"
    one_line_error(run(store, "inspect", "--type", "volume", user, ok=False), "not found", user)
    # The shell completes volume names (zsh's protocol; bash's and fish's are the same call).
    for line, want in (("ctrstore volume rm ", ["keep", "spare"]), ("ctrstore volume inspect sp", ["spare"])):
        words = line.split(" ")
        env = store_env(store) | {
            "_CTRSTORE_COMPLETE": "zsh_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
        r = subprocess.run(
            [sys.executable, "-m", "ctrstore"], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT
        )
        offered = r.stdout.split("\n")[1::3]
        assert r.returncode == 0 and offered == want, r
    assert "spare" in run(store, "volume", "rm", "spare").stdout
