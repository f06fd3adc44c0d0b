"""What scripts read (issue #12, "Output"): ``ps``, ``images`` and ``inspect`` with docker's and
nerdctl's field names and shapes, ``--format`` (``json`` lines, ``table``, Go templates) read
back with ``jq`` and Python's json, docker's filters, a terminal's colours and widths (plain
on a pipe, ``NO_COLOR``), and bash/zsh/fish completion of commands, flags and names.

The expected fields are docker's documented ones: ``docker inspect`` (the Engine API's
``ContainerInspectResponse`` and ``ImageInspect``), ``docker ps --format '{{json .}}'`` (the
CLI's ``ContainerContext``), and nerdctl's ``images --format json`` (``imagePrintable`` in
``pkg/cmd/image/list.go``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctrstore import Client
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from tests.support.cli import CLI_TIMEOUT, one_line_error, run, store_env, unique_name
from tests.support.images import BUSYBOX

RUNC = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)")
JQ = shutil.which("jq")

# docker's documented fields
DOCKER_PS_FIELDS = {
    "Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names", "Networks",
    "Ports", "RunningFor", "Size", "State", "Status",
}  # fmt: skip
DOCKER_CONTAINER_KEYS = [
    "Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath", "HostnamePath", "HostsPath",
    "LogPath", "Name", "RestartCount", "Driver", "Platform", "MountLabel", "ProcessLabel",
    "AppArmorProfile", "ExecIDs", "HostConfig", "GraphDriver", "Mounts", "Config", "NetworkSettings",
]  # fmt: skip
DOCKER_STATE_KEYS = [
    "Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode", "Error",
    "StartedAt", "FinishedAt",
]  # fmt: skip
DOCKER_CONFIG_KEYS = {
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
    "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels",
}  # fmt: skip
DOCKER_IMAGE_KEYS = [
    "Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config",
    "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata",
]  # fmt: skip
NERDCTL_IMAGE_FIELDS = {
    "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "Tag", "Name", "Size", "BlobSize", "Platform",
}  # fmt: skip
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def out(store: Path, *args: str) -> str:
    return run(store, *args).stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def jq(filter_: str, text: str, *flags: str) -> str:
    """``jq`` as a shell script would run it."""
    assert JQ is not None
    r = subprocess.run([JQ, *flags, filter_], input=text, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def columns(header: str) -> list[str]:
    return re.split(r" {2,}", header.strip())


# -- containers -----------------------------------------------------------------------------------
@pytest.fixture
def three(busybox_store: Path) -> Iterator[tuple[Path, str, str, str]]:
    """web (running), done (exited 3), fresh (created), created in that order."""
    store = busybox_store
    web, done, fresh = unique_name("web"), unique_name("done"), unique_name("fresh")
    run(store, "run", "-d", "--name", web, BUSYBOX, "sleep", "1000")
    time.sleep(0.01)
    assert run(store, "run", "--name", done, BUSYBOX, "sh", "-c", "exit 3", ok=False).returncode == 3
    time.sleep(0.01)
    run(store, "create", "--name", fresh, BUSYBOX, "true")
    yield store, web, done, fresh


pytestmark = pytest.mark.root


@RUNC
def test_ps_prints_dockers_fields(three: tuple[Path, str, str, str]) -> None:
    store, web, done, fresh = three
    # the default table: docker's columns
    lines = out(store, "ps", "-a").splitlines()
    assert columns(lines[0]) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert columns(out(store, "ps", "-s").splitlines()[0])[-1] == "SIZE"
    # one JSON object per line, docker's fields (what `docker ps --format '{{json .}}'` gives)
    rows = json_lines(out(store, "ps", "-a", "--format", "{{json .}}"))
    same = json_lines(out(store, "ps", "-a", "--format", "json"))
    assert [(r["ID"], r["State"]) for r in rows] == [(r["ID"], r["State"]) for r in same]
    assert [r["Names"] for r in rows] == [fresh, done, web]  # newest first
    for r in rows:
        assert set(r) == DOCKER_PS_FIELDS, r
        assert all(isinstance(v, str) for v in r.values()), r
    by = {r["Names"]: r for r in rows}
    assert [by[n]["State"] for n in (web, done, fresh)] == ["running", "exited", "created"]
    assert re.fullmatch(r"Up (Less than a second|\d+ seconds?)", by[web]["Status"]), by[web]
    assert re.fullmatch(r"Exited \(3\) (Less than a second|\d+ seconds?) ago", by[done]["Status"]), by[done]
    assert by[fresh]["Status"] == "Created"
    assert by[web]["Command"] == '"sleep 1000"' and by[web]["Image"] == BUSYBOX
    assert by[web]["ID"] == web[:12] and by[web]["RunningFor"].endswith(" ago")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \w+", by[web]["CreatedAt"]), by[web]
    assert by[web]["Labels"] == f"nerdctl/name={web}"
    # running ones only without -a
    assert [r["Names"] for r in json_lines(out(store, "ps", "--format", "json"))] == [web]
    # templates, methods, tables of chosen columns
    assert out(store, "ps", "-a", "--format", "{{.Names}} {{.State}}").splitlines() == [
        f"{fresh} created",
        f"{done} exited",
        f"{web} running",
    ]
    assert out(store, "ps", "--format", '{{.Label "nerdctl/name"}}') == f"{web}\n"
    table = out(store, "ps", "-a", "--format", "table {{.Names}}\\t{{.State}}").splitlines()
    assert columns(table[0]) == ["NAMES", "STATE"] and columns(table[2]) == [done, "exited"]
    assert out(store, "ps", "--no-trunc", "--format", "{{.ID}}") == f"{web}\n"
    # -s: docker's "2B (virtual 21.5MB)"
    size = out(store, "ps", "-s", "--format", "{{.Size}}").strip()
    assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B \(virtual \d+(\.\d+)?[kMG]?B\)", size), size
    if JQ:
        text = out(store, "ps", "-a", "--format", "{{json .}}")
        assert jq(".Names", text, "-r").split() == [fresh, done, web]
        assert jq('select(.State == "exited") | .Status', text, "-r").startswith("Exited (3)")


@RUNC
def test_ps_filters_as_docker(three: tuple[Path, str, str, str]) -> None:
    store, web, done, fresh = three

    def names(*args: str) -> list[str]:
        return out(store, "ps", *args, "--format", "{{.Names}}").split()

    assert names("-a", "--filter", "status=exited") == [done]
    assert names("--filter", "status=exited") == [done]  # a status filter shows stopped ones, as docker
    assert names("-a", "-f", "status=running", "-f", "status=created") == [fresh, web]
    assert names("-a", "--filter", "exited=3") == [done]
    assert names("-a", "--filter", "exited=0") == []
    assert names("-a", "--filter", f"name=^{web[:4]}") == [web]
    assert names("-a", "--filter", f"id={done[:6]}") == [done]
    assert names("-a", "--filter", f"label=nerdctl/name={fresh}") == [fresh]
    assert names("-a", "--filter", "label=nerdctl/name") == [fresh, done, web]
    assert names("-a", "--filter", "ancestor=localhost/busybox") == [fresh, done, web]
    image_id = out(store, "images", "-q").strip()
    assert names("-a", "--filter", f"ancestor={image_id}") == [fresh, done, web]
    assert names("-a", "--filter", "ancestor=localhost/other") == []
    assert names("-a", "--filter", f"since={web}") == [fresh, done]
    assert names("-a", "--filter", f"before={fresh}") == [done, web]
    assert names("-n", "2") == [fresh, done]  # any state
    assert names("-l") == [fresh]
    assert out(store, "ps", "-a", "-q", "--filter", "status=exited") == f"{done}\n"  # whole ids
    one_line_error(
        run(store, "ps", "--filter", "bogus=1", ok=False), "invalid argument", "bogus=1", "ancestor"
    )
    one_line_error(run(store, "ps", "--filter", "status=up", ok=False), "invalid argument", "exited")
    line = one_line_error(run(store, "ps", "--format", "{{.Nmaes}}", ok=False), "invalid argument")
    assert 'no field "Nmaes"' in line and "Names" in line


@RUNC
def test_inspect_is_dockers_json(busybox_store: Path, tmp_path: Path) -> None:
    store = busybox_store
    web = unique_name("web")
    vol = tmp_path / "vol"
    vol.mkdir()
    run(
        store,
        "run",
        "-d",
        "--name",
        web,
        "-e",
        "A=1",
        "-w",
        "/data",
        "-v",
        f"{vol}:/v:ro",
        BUSYBOX,
        "sleep",
        "1000",
    )
    [c] = json.loads(out(store, "inspect", web))
    assert list(c)[: len(DOCKER_CONTAINER_KEYS)] == DOCKER_CONTAINER_KEYS
    assert list(c["State"]) == DOCKER_STATE_KEYS
    assert set(c["Config"]) >= DOCKER_CONFIG_KEYS
    assert c["Id"] == web and c["Name"] == f"/{web}" and c["Path"] == "sleep" and c["Args"] == ["1000"]
    assert RFC3339.fullmatch(c["Created"]) and RFC3339.fullmatch(c["State"]["StartedAt"])
    st = c["State"]
    assert (st["Status"], st["Running"], st["Paused"], st["ExitCode"]) == ("running", True, False, 0)
    assert st["Pid"] > 0 and st["FinishedAt"] == "0001-01-01T00:00:00Z"
    image = json.loads(out(store, "inspect", "--type", "image", BUSYBOX))[0]
    assert c["Image"] == image["Id"] and c["Config"]["Image"] == BUSYBOX
    assert "A=1" in c["Config"]["Env"] and c["Config"]["WorkingDir"] == "/data"
    assert c["Config"]["Cmd"] == ["sleep", "1000"] and c["Config"]["Labels"] == {"nerdctl/name": web}
    assert c["Mounts"] == [
        {
            "Type": "bind",
            "Source": str(vol),
            "Destination": "/v",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        }
    ]
    assert c["HostConfig"]["Binds"] == [f"{vol}:/v:ro"] and c["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert c["GraphDriver"]["Name"] == "overlayfs" and Path(c["GraphDriver"]["Data"]["MergedDir"]).is_dir()
    assert c["NetworkSettings"]["Ports"] == {} and c["LogPath"].endswith("/log")
    assert json.loads(out(store, "container", "inspect", web)) == [c]  # the same object, by its noun
    # --format: a template per object
    assert out(store, "inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Config.Image}}", web) == (
        f"running true {BUSYBOX}\n"
    )
    assert json.loads(out(store, "inspect", "--format", "{{json .Config}}", web))["WorkingDir"] == "/data"
    assert out(store, "inspect", "-f", "{{range .Mounts}}{{.Source}}{{end}}", web) == f"{vol}\n"
    assert out(store, "inspect", "-f", "{{.Id}}", web, BUSYBOX) == f"{web}\n{image['Id']}\n"
    if JQ:
        assert jq(".[0].State.Status", out(store, "inspect", web), "-r") == "running\n"
        assert jq(".[0].Mounts[0].Destination", out(store, "container", "inspect", web), "-r") == "/v\n"
    sized = json.loads(out(store, "inspect", "--size", web))[0]
    assert isinstance(sized["SizeRw"], int) and sized["SizeRootFs"] > sized["SizeRw"]
    # stopped: docker's "exited"
    run(store, "stop", "-t", "1", web)
    [c] = json.loads(out(store, "inspect", web))
    st = c["State"]
    assert (st["Status"], st["Running"], st["ExitCode"]) == ("exited", False, 137)
    assert RFC3339.fullmatch(st["FinishedAt"]) and st["FinishedAt"] != "0001-01-01T00:00:00Z"
    # a name found nowhere: the others are printed, then one error line, exit 1
    r = run(store, "inspect", web, "nosuch", ok=False)
    assert [x["Id"] for x in json.loads(r.stdout)] == [web]
    one_line_error(r, "not found", "nosuch")
    r = run(store, "inspect", "--type", "container", BUSYBOX, ok=False)
    assert r.stdout.strip() == "[]"
    one_line_error(r, "not found", "no such container")


def test_images_are_nerdctls(tmp_path: Path) -> None:
    store = tmp_path
    c = Client(root=store / "root", state=store / "state")
    try:
        from tests.support.images import busybox_image

        busybox_image(c.content, c.images, BUSYBOX)
        time.sleep(0.01)
        layer = tar_from_entries([Entry("etc", "dir"), Entry("etc/app", data=b"app\n")])
        app = build_image(
            c.content, c.images, "example.com/team/app:1", [layer], ImageSpec(labels={"tier": "front"})
        )
        time.sleep(0.01)
        c.images.create(type(app)("example.com/team/app:2", app.target))
        time.sleep(0.01)
        build_image(c.content, c.images, "example.com/team/untagged", [layer], ImageSpec(cmd=("x",)))
        c.images.set_labels("example.com/team/app:1", {"note": "evil\x1b[31m\u202e"})
    finally:
        c.close()

    lines = out(store, "images").splitlines()
    assert columns(lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "PLATFORM", "SIZE", "BLOB SIZE"]
    assert [columns(x)[:2] for x in lines[1:]] == [
        ["example.com/team/untagged", "<none>"],
        ["example.com/team/app", "2"],
        ["example.com/team/app", "1"],
        ["localhost/busybox", "latest"],
    ]
    assert out(store, "image", "ls", "-q") == out(store, "images", "ls", "-q") == out(store, "images", "-q")
    assert columns(out(store, "images", "--digests").splitlines()[0])[2:4] == ["DIGEST", "IMAGE ID"]
    rows = json_lines(out(store, "images", "--format", "json"))
    assert [r["Name"] for r in rows] == [
        r["Name"] for r in json_lines(out(store, "images", "--format", "{{json .}}"))
    ]
    for r in rows:
        assert set(r) >= NERDCTL_IMAGE_FIELDS, r
        assert re.fullmatch(r"[0-9a-f]{12}", r["ID"]) and r["Digest"].endswith(r["ID"] + r["Digest"][19:])
        assert r["Platform"] == rows[0]["Platform"] and re.fullmatch(r"\d+(\.\d+)?[kM]?B", r["BlobSize"]), r
        assert r["Size"] == "0B"  # nothing unpacked yet
    assert out(store, "images", "-q").split() == [r["ID"] for r in rows]
    assert all(x.startswith("sha256:") for x in out(store, "images", "-q", "--no-trunc").split())
    # the labels a template prints are escaped; JSON stays JSON
    labelled = out(store, "images", "--format", "{{.Labels}}", "example.com/team/app:1")
    assert labelled == "note=evil\\x1b[31m\\u202e\n"
    assert all(line.isprintable() for line in out(store, "images", "--format", "json").splitlines())

    def names(*args: str) -> list[str]:
        return out(store, "images", *args, "--format", "{{.Name}}").split()

    assert names("--filter", "reference=example.com/team/app:*") == [
        "example.com/team/app:2",
        "example.com/team/app:1",
    ]
    assert names("example.com/team/app") == names("--filter", "reference=example.com/team/app")
    assert names("--filter", "label=tier=front") == ["example.com/team/app:2", "example.com/team/app:1"]
    assert names("--filter", "label=tier") == names("--filter", "label=tier=front")
    assert names("--filter", "dangling=true") == ["example.com/team/untagged"]
    assert len(names("--filter", "dangling=false")) == 3
    assert names("--filter", "since=example.com/team/app:1") == [
        "example.com/team/untagged",
        "example.com/team/app:2",
    ]
    assert names("--filter", f"before={BUSYBOX}") == []
    assert names("--filter", "before=example.com/team/app:1") == [BUSYBOX]
    assert names("name~=untagged") == ["example.com/team/untagged"]  # ctr's filters still work
    one_line_error(run(store, "images", "--filter", "size=1", ok=False), "invalid argument", "size=1")
    # unpacked: SIZE is the snapshots'
    run(store, "images", "unpack", BUSYBOX)
    [size] = out(store, "images", "--format", "{{.Size}}", "localhost/busybox").split()
    assert size != "0B" and re.fullmatch(r"\d+(\.\d+)?[kM]B", size)
    if JQ:
        text = out(store, "images", "--format", "json")
        assert jq('select(.Tag == "1") | .Repository', text, "-r") == "example.com/team/app\n"

    # docker's image inspect, by name or ID
    [img] = json.loads(out(store, "image", "inspect", "example.com/team/app:1"))
    assert list(img)[: len(DOCKER_IMAGE_KEYS)] == [k for k in DOCKER_IMAGE_KEYS]
    assert img["RepoTags"] == ["example.com/team/app:1", "example.com/team/app:2"]
    assert img["RepoDigests"] == [f"example.com/team/app@{img['Id']}"]
    assert img["Config"]["Labels"] == {"tier": "front"} and img["RootFS"]["Type"] == "layers"
    assert len(img["RootFS"]["Layers"]) == 1 and img["Created"] == "2023-11-14T22:13:20Z"
    assert img["Labels"] == {"note": "evil\x1b[31m\u202e"}
    short = img["Id"][7:19]

    def same(x: dict[str, Any]) -> dict[str, Any]:  # what is the image's, not the name's
        return {k: v for k, v in x.items() if k not in ("Labels", "Metadata")}

    assert [same(x) for x in json.loads(out(store, "inspect", short))] == [same(img)]
    assert [same(x) for x in json.loads(out(store, "inspect", "--type", "image", img["Id"]))] == [same(img)]
    assert out(store, "inspect", "-f", '{{.Os}}/{{.Architecture}} {{join .RepoTags ","}}', short) == (
        f"{rows[0]['Platform']} example.com/team/app:1,example.com/team/app:2\n"
    )


# -- the terminal ---------------------------------------------------------------------------------
def on_terminal(store: Path, *args: str, cols: int = 70, env: dict[str, str] | None = None) -> str:
    """The command's output on a pseudo-terminal ``cols`` wide."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    e = {k: v for k, v in store_env(store).items() if k not in ("NO_COLOR", "COLUMNS", "LINES", "TERM")}
    e |= {"TERM": "xterm"} | (env or {})
    p = subprocess.Popen(
        [sys.executable, "-m", "ctrstore", *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=e
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + CLI_TIMEOUT
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        assert p.wait(timeout=CLI_TIMEOUT) == 0, b"".join(chunks)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    return b"".join(chunks).decode().replace("\r\n", "\n")


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@RUNC
def test_colour_and_width_on_a_terminal_plain_on_a_pipe(busybox_store: Path) -> None:
    store = busybox_store
    long_name = unique_name("a-container-with-a-name-far-too-long-for-a-narrow-terminal")
    run(store, "create", "--name", long_name, BUSYBOX, "sh", "-c", "echo a long command line that goes on")
    tty = on_terminal(store, "ps", "-a", cols=80)
    lines = tty.splitlines()
    assert lines[0].startswith("\x1b[1mCONTAINER ID\x1b[0m")  # bold headers
    assert "\x1b[33mCreated\x1b[0m" in lines[1]  # a status in colour
    assert all(len(ANSI.sub("", line)) <= 80 for line in lines), lines  # cut to the terminal
    assert "…" in lines[1] and long_name not in tty
    # NO_COLOR: the same table, without colour
    plain_tty = on_terminal(store, "ps", "-a", cols=80, env={"NO_COLOR": "1"})
    assert "\x1b" not in plain_tty and columns(ANSI.sub("", lines[0])) == columns(plain_tty.splitlines()[0])
    # --no-trunc: whole cells, even on a terminal
    assert long_name in on_terminal(store, "ps", "-a", "--no-trunc", cols=80)
    # a pipe: plain and whole
    piped = out(store, "ps", "-a")
    assert "\x1b" not in piped and long_name in piped
    # other tables: bold headers on a terminal only
    assert on_terminal(store, "namespaces", "ls").startswith("\x1b[1mNAME")
    assert out(store, "namespaces", "ls").startswith("NAME ")


# -- completion -----------------------------------------------------------------------------------
def _bash_complete(store: Path, script: Path, line: str, words: list[str] | None = None) -> list[str]:
    """What bash offers for ``line`` (cursor at its end): the script sourced, the completion
    function called as bash calls it."""
    if words is None:
        words = line.split() + ([""] if line.endswith(" ") else [])
    driver = (
        f"source {script}\n"
        f"COMP_LINE={json.dumps(line)}; COMP_POINT=${{#COMP_LINE}}\n"
        f"COMP_WORDS=({' '.join(json.dumps(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_ctrstore_completion ctrstore\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = store_env(store) | {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [x for x in r.stdout.splitlines() if x]


@pytest.fixture
def completion_script(tmp_path: Path) -> Path:
    if not (Path(sys.executable).parent / "ctrstore").exists():
        pytest.skip("the ctrstore command is not installed beside this Python (./scripts/setup)")
    script = tmp_path / "ctrstore.bash"
    script.write_text(run(tmp_path, "completion", "bash").stdout)
    return script


@RUNC
def test_bash_completion(busybox_store: Path, completion_script: Path) -> None:
    store = busybox_store
    web = unique_name("web")
    run(store, "create", "--name", web, BUSYBOX, "true")

    def complete(line: str, words: list[str] | None = None) -> list[str]:
        return _bash_complete(store, completion_script, line, words)

    assert complete("ctrstore ins") == ["inspect"]
    assert {"images", "ps", "inspect", "completion", "run"} <= set(complete("ctrstore "))
    assert complete("ctrstore ps --fi") == ["--filter"]
    assert complete("ctrstore images ") >= ["check", "export"]
    assert complete("ctrstore stop ") == [web]
    assert complete(f"ctrstore logs {web[:3]}") == [web]
    assert complete("ctrstore rmi local") == [BUSYBOX]
    assert complete("ctrstore run -d loc") == [BUSYBOX]
    assert set(complete("ctrstore inspect ")) == {web, BUSYBOX}
    assert complete("ctrstore completion ") == ["bash", "zsh", "fish"]
    # bash cut the word at ':' (COMP_WORDBREAKS): the answer is what follows it
    line = "ctrstore rmi localhost/busybox:la"
    assert complete(line, ["ctrstore", "rmi", "localhost/busybox", ":", "la"]) == ["latest"]
    # another store (--root), or one that cannot be opened: nothing, and no error
    assert complete(f"ctrstore --root {store}/nowhere stop ") == []


@RUNC
def test_zsh_and_fish_completion(busybox_store: Path) -> None:
    store = busybox_store
    web = unique_name("web")
    run(store, "create", "--name", web, BUSYBOX, "true")
    zsh = run(store, "completion", "zsh").stdout
    assert "#compdef ctrstore" in zsh and "_CTRSTORE_COMPLETE=zsh_complete" in zsh
    fish = run(store, "completion", "fish").stdout
    assert "complete --no-files --command ctrstore" in fish and "_CTRSTORE_COMPLETE=fish_complete" in fish
    # what those scripts ask ctrstore (zsh and fish are not installed here to run them)
    env = store_env(store) | {
        "_CTRSTORE_COMPLETE": "zsh_complete",
        "COMP_WORDS": "ctrstore kill ",
        "COMP_CWORD": "2",
    }
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore"], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT
    )
    assert r.returncode == 0 and r.stdout.split("\n")[:3] == ["plain", web, "_"], r
    env |= {"_CTRSTORE_COMPLETE": "fish_complete", "COMP_WORDS": "ctrstore kill ", "COMP_CWORD": ""}
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore"], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT
    )
    assert r.returncode == 0 and r.stdout.split("\n")[0] == f"plain,{web}", r


def test_completion_needs_a_known_shell(tmp_path: Path) -> None:
    r = run(tmp_path, "completion", "tcsh", ok=False)
    assert r.returncode == 2 and "bash" in r.stderr and "Traceback" not in r.stderr
