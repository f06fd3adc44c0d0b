"""docker's run flags, parsed and put into the spec (issue #11): sizes, ``--tmpfs``,
``--device``, ``--ulimit``, ``--env-file``, labels, restart policies and their back-off,
cgroup resources and their rules, ``--entrypoint``, ``--init``, ``--shm-size``; the json-file
log (streams, times, partial lines, bytes that are not UTF-8, ``--since``/``--until``/
``--tail``); images found by the names docker takes (``ImageStore.lookup``); the exit status
of a command the runtime could not run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest

from ctrstore import Client
from ctrstore.cli._run_flags import (
    apply_run_flags,
    parse_detach_keys,
    parse_device,
    parse_size,
    parse_tmpfs,
    parse_ulimit,
    read_env_file,
)
from ctrstore.content import Descriptor
from ctrstore.errdefs import FailedPrecondition, InvalidArgument, NotFound
from ctrstore.labels import RESTART_POLICY, STOP_SIGNAL
from ctrstore.metadata.images import Image
from ctrstore.oci import SpecOptions, generate
from ctrstore.oci.resources import INIT_PATH, Resources, Ulimit
from ctrstore.runtime.logs import MAX_LINE, LogWriter, format_time, parse_log_time, parse_user_time, read_log
from ctrstore.runtime.restart import RestartPolicy, backoff
from ctrstore.runtime.runc import command_status

CONFIG = {"config": {"Entrypoint": ["/entry"], "Cmd": ["default"], "Env": ["PATH=/bin"]}}


def spec_of(opts: SpecOptions, tmp_path: Path) -> dict[str, object]:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return generate("c1", "default", CONFIG, opts, tmp_path)


# -- sizes and flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("100", 100),
        ("1.5g", 3 << 29),
        ("64MiB", 64 << 20),
    ],
)
def test_sizes_are_dockers(text: str, value: int) -> None:
    assert parse_size(text, "-m") == value


def test_a_bad_size_names_the_flag() -> None:
    with pytest.raises(click.BadParameter, match="64 megs"):
        parse_size("64 megs", "--memory")


def test_tmpfs_defaults_and_options() -> None:
    m = parse_tmpfs("/run/x:size=1m,mode=1777")
    assert (m.destination, m.type, m.options) == (
        "/run/x",
        "tmpfs",
        ("noexec", "nosuid", "nodev", "size=1m", "mode=1777"),
    )
    assert parse_tmpfs("/x:exec,suid").options == ("nodev",)
    with pytest.raises(InvalidArgument, match="absolute path"):
        parse_tmpfs("x")


def test_devices() -> None:
    d = parse_device("/dev/null:/dev/mynull:rw")
    assert (d.host_path, d.container_path, d.permissions) == ("/dev/null", "/dev/mynull", "rw")
    assert parse_device("/dev/null:r").permissions == "r"
    assert parse_device("/dev/null").container_path == ""
    with pytest.raises(InvalidArgument, match="permissions"):
        parse_device("/dev/null:/dev/x:rwz")
    with pytest.raises(InvalidArgument, match="absolute path"):
        parse_device("null")


def test_ulimits() -> None:
    assert parse_ulimit("nofile=1024:2048") == Ulimit("nofile", 1024, 2048)
    assert parse_ulimit("nproc=100") == Ulimit("nproc", 100, 100)
    assert parse_ulimit("core=-1").hard == (1 << 64) - 1
    for bad, msg in [("nofile", "NAME=SOFT"), ("nofile=x", "not a number"), ("bogus=1", "invalid ulimit")]:
        with pytest.raises(InvalidArgument, match=msg):
            parse_ulimit(bad)
    with pytest.raises(InvalidArgument, match="above the hard limit"):
        parse_ulimit("nofile=10:5")


def test_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=1\n  B=two words\nFROM_HOST\nNOT_SET\nC=x=y\n")
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert read_env_file(str(f)) == ["A=1", "B=two words", "FROM_HOST=h", "C=x=y"]
    f.write_text("BAD KEY=1\n")
    with pytest.raises(InvalidArgument, match="line 1"):
        read_env_file(str(f))
    with pytest.raises(NotFound, match="does not exist"):
        read_env_file(str(tmp_path / "none"))


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("alt-x")


def test_apply_run_flags_makes_labels_and_options(tmp_path: Path) -> None:
    opts = SpecOptions(args=["sh"], env=["A=flag"])
    env = tmp_path / "env"
    env.write_text("A=file\nB=file\n")
    labels = apply_run_flags(
        opts,
        {
            "entrypoint": "",
            "env_files": (str(env),),
            "labels": ("k=v", "bare"),
            "memory": "64m",
            "cpus": 1.0,
            "restart": "on-failure:3",
            "stop_signal": "usr1",
            "tmpfs": ("/t",),
        },
    )
    assert labels == {"k": "v", "bare": "", RESTART_POLICY: "on-failure:3", STOP_SIGNAL: "SIGUSR1"}
    assert opts.entrypoint == [] and opts.env == ["A=file", "B=file", "A=flag"]
    assert opts.resources == Resources(memory=64 << 20, cpus=1.0)
    assert [m.destination for m in opts.mounts] == ["/t"]
    assert apply_run_flags(SpecOptions(), {"restart": "no"}) == {}


# -- restart policies -------------------------------------------------------------------------


def test_restart_policies() -> None:
    assert RestartPolicy.parse(None) == RestartPolicy("no") == RestartPolicy.parse("")
    p = RestartPolicy.parse("on-failure:2")
    assert (p.name, p.max_retries, str(p)) == ("on-failure", 2, "on-failure:2")
    assert p.should_restart(1, 0, stopped_by_user=False) and p.should_restart(1, 1, stopped_by_user=False)
    assert not p.should_restart(1, 2, stopped_by_user=False)
    assert not p.should_restart(0, 0, stopped_by_user=False)
    assert RestartPolicy.parse("on-failure").should_restart(1, 1000, stopped_by_user=False)
    for name in ("always", "unless-stopped"):
        always = RestartPolicy.parse(name)
        assert always.should_restart(0, 99, stopped_by_user=False)
        assert not always.should_restart(1, 0, stopped_by_user=True)
    assert not RestartPolicy.parse("no").should_restart(1, 0, stopped_by_user=False)
    for bad in ("sometimes", "always:3", "on-failure:x", "on-failure:-1"):
        with pytest.raises(InvalidArgument, match="restart policy"):
            RestartPolicy.parse(bad)


def test_backoff_doubles_and_resets() -> None:
    assert [backoff(n, 0) for n in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff(30, 0) == 60.0
    assert backoff(30, 11) == 0.1


# -- resources and the spec ---------------------------------------------------------------------


def test_resources_follow_dockers_rules() -> None:
    assert Resources(memory=64 << 20).to_json() == {"memory": {"limit": 64 << 20, "swap": 128 << 20}}
    assert Resources(memory=64 << 20).to_json(swap_accounting=False) == {"memory": {"limit": 64 << 20}}
    assert Resources(memory=64 << 20, memory_swap=-1).to_json()["memory"]["swap"] == -1
    assert Resources(cpus=1.5, cpu_shares=512).to_json() == {
        "cpu": {"quota": 150000, "period": 100000, "shares": 512}
    }
    assert Resources(pids_limit=0).to_json() == {"pids": {"limit": -1}}
    for bad, msg in [
        (Resources(memory=1 << 20), "minimum is 6MB"),
        (Resources(memory_swap=1 << 30), "needs --memory"),
        (Resources(memory=64 << 20, memory_swap=32 << 20), "at least --memory"),
        (Resources(cpus=(os.cpu_count() or 1) + 1), "range of CPUs"),
        (Resources(pids_limit=-5), "--pids-limit"),
    ]:
        with pytest.raises(InvalidArgument, match=msg):
            bad.to_json()


def test_spec_gets_entrypoint_resources_ulimits_shm_init(tmp_path: Path) -> None:
    spec = spec_of(SpecOptions(args=["a"]), tmp_path)
    assert spec["process"]["args"] == ["/entry", "a"]  # type: ignore[index]
    spec = spec_of(SpecOptions(entrypoint=["/other"]), tmp_path)
    assert spec["process"]["args"] == ["/other"]  # type: ignore[index]  # the image's Cmd goes too
    spec = spec_of(SpecOptions(entrypoint=[], args=["x", "y"]), tmp_path)
    assert spec["process"]["args"] == ["x", "y"]  # type: ignore[index]
    init = tmp_path / "tini"
    init.write_bytes(b"\x7fELF")
    spec = spec_of(
        SpecOptions(
            args=["a"],
            resources=Resources(pids_limit=5),
            ulimits=[Ulimit("nofile", 10, 20), Ulimit("nproc", 5, 5)],
            shm_size=8 << 20,
            init=str(init),
        ),
        tmp_path,
    )
    process, linux, mounts = spec["process"], spec["linux"], spec["mounts"]
    assert process["args"] == [INIT_PATH, "--", "/entry", "a"]  # type: ignore[index]
    assert process["rlimits"] == [  # type: ignore[index]
        {"type": "RLIMIT_NOFILE", "hard": 20, "soft": 10},
        {"type": "RLIMIT_NPROC", "hard": 5, "soft": 5},
    ]
    assert linux["resources"]["pids"] == {"limit": 5}  # type: ignore[index]
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}  # type: ignore[index]
    shm = next(m for m in mounts if m["destination"] == "/dev/shm")  # type: ignore[attr-defined]
    assert "size=8192k" in shm["options"] and "size=65536k" not in shm["options"]
    tini = next(m for m in mounts if m["destination"] == INIT_PATH)  # type: ignore[attr-defined]
    assert tini == {"destination": INIT_PATH, "type": "bind", "source": str(init), "options": ["bind", "ro"]}


def test_device_in_the_spec(tmp_path: Path) -> None:
    from ctrstore.oci.resources import DeviceMapping

    spec = spec_of(SpecOptions(args=["a"], devices=[DeviceMapping("/dev/null", "/dev/n2", "r")]), tmp_path)
    linux = spec["linux"]
    [dev] = linux["devices"]  # type: ignore[index]
    assert (dev["path"], dev["type"], dev["major"], dev["minor"]) == ("/dev/n2", "c", 1, 3)
    assert linux["resources"]["devices"][-1] == {  # type: ignore[index]
        "allow": True,
        "type": "c",
        "major": 1,
        "minor": 3,
        "access": "r",
    }
    with pytest.raises(InvalidArgument, match="not a character or block device"):
        spec_of(SpecOptions(args=["a"], devices=[DeviceMapping(str(tmp_path))]), tmp_path)


def test_init_binary_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctrstore.oci import resources

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FailedPrecondition, match="apt-get install tini"):
        resources.find_init()


# -- exit statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (
            "OCI runtime create failed: unable to start container process: "
            'exec: "x": executable file not found in $PATH',
            127,
        ),
        ('exec: "/nope": stat /nope: no such file or directory', 127),
        ('exec: "/etc/passwd": permission denied', 126),
        ('exec failed: exec: "/etc": is a directory', 126),
        ("no such image: alpine", None),
        ("cgroup: no such file or directory", None),
    ],
)
def test_command_status(message: str, status: int | None) -> None:
    assert command_status(message) == status


# -- the json-file log --------------------------------------------------------------------------


def test_log_lines_streams_partials_and_bytes(tmp_path: Path) -> None:
    log = LogWriter(tmp_path / "log")
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"err\n")
    log.write("stdout", b"o\n\xff\xfe raw\n")
    log.write("stdout", b"x" * (MAX_LINE + 10))
    log.write("stdout", b"tail")
    log.close()
    lines = (tmp_path / "log").read_bytes().splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["stream"] for d in docs] == ["stdout", "stderr", "stdout", "stdout", "stdout", "stdout"]
    assert docs[0]["log"] == "one\n" and docs[2]["log"] == "two\n"
    assert all(parse_log_time(d["time"]) > 0 for d in docs)
    entries = list(read_log(tmp_path / "log"))
    assert entries[3].data == b"\xff\xfe raw\n"  # not UTF-8, read back as it was written
    assert entries[4].data == b"x" * MAX_LINE  # a partial entry at 16 KiB
    assert entries[5].data == b"x" * 10 + b"tail"  # the rest, when the stream ended
    assert b"".join(e.data for e in entries if e.stream == "stdout") == (
        b"one\ntwo\n\xff\xfe raw\n" + b"x" * (MAX_LINE + 10) + b"tail"
    )


def test_log_reading_cuts(tmp_path: Path) -> None:
    path = tmp_path / "log"
    base = 1_700_000_000 * 10**9
    with open(path, "w") as f:
        for i in range(5):
            doc = {"log": f"{i}\n", "stream": "stdout", "time": format_time(base + i * 10**9)}
            f.write(json.dumps(doc) + "\n")
        f.write('{"torn": ')  # a line still being written
    assert [e.data for e in read_log(path)] == [b"0\n", b"1\n", b"2\n", b"3\n", b"4\n"]
    assert [e.data for e in read_log(path, tail=2)] == [b"3\n", b"4\n"]
    assert [e.data for e in read_log(path, since_ns=base + 2 * 10**9)] == [b"2\n", b"3\n", b"4\n"]
    assert [e.data for e in read_log(path, until_ns=base + 2 * 10**9)] == [b"0\n", b"1\n"]
    assert [e.data for e in read_log(path, tail=1, until_ns=base + 3 * 10**9)] == [b"2\n"]
    assert list(read_log(tmp_path / "none")) == []
    # A log of plain output (an older ctrstore's) is shown as it is.
    (tmp_path / "plain").write_bytes(b"old line\nanother\n")
    assert b"".join(e.data for e in read_log(tmp_path / "plain")) == b"old line\nanother\n"


def test_log_times() -> None:
    assert format_time(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert parse_log_time("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456_789
    assert parse_log_time("2023-11-14T23:13:20+01:00") == 1_700_000_000 * 10**9
    now = 1_700_000_000 * 10**9
    assert parse_user_time("10m", now) == now - 600 * 10**9
    assert parse_user_time("1h30m", now) == now - 5400 * 10**9
    assert parse_user_time("1700000000.5", now) == now + 5 * 10**8
    assert parse_user_time("2023-11-14", now) == parse_log_time("2023-11-14T00:00:00Z")
    for bad in ("yesterday", "10x", "2023-13-01T00:00:00Z"):
        with pytest.raises(InvalidArgument, match="invalid time"):
            parse_user_time(bad, now)


# -- images by the names docker takes -----------------------------------------------------------


def _image(client: Client, name: str, digest_char: str) -> Image:
    d = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + digest_char * 64, 10)
    return client.images.create(Image(name, d))


def test_image_lookup(client: Client) -> None:
    images = client.images
    _image(client, "docker.io/library/alpine:latest", "a")
    _image(client, "docker.io/library/alpine:3", "b")
    _image(client, "example.com/team/app:1", "b")
    _image(client, "app:local", "c")  # imported under a name that is no normalised one
    for ref, name in [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:latest", "docker.io/library/alpine:latest"),
        ("docker.io/library/alpine", "docker.io/library/alpine:latest"),
        ("library/alpine:3", "docker.io/library/alpine:3"),
        ("app:local", "app:local"),
        ("aaaa", "docker.io/library/alpine:latest"),  # an ID prefix
        ("sha256:aaaa", "docker.io/library/alpine:latest"),
        ("alpine@sha256:" + "a" * 64, "docker.io/library/alpine:latest"),
        ("cccccccccccc", "app:local"),
    ]:
        assert images.lookup(ref).name == name, ref
    # bbbb names two images with one target: either is that image.
    assert images.lookup("bbbb").target.digest == "sha256:" + "b" * 64
    _image(client, "docker.io/library/other:1", "d")
    _image(client, "docker.io/library/other:2", "e")
    with pytest.raises(NotFound, match="no such image: nothere"):
        images.lookup("nothere")
    with pytest.raises(NotFound):
        images.lookup("alpine@sha256:" + "b" * 64 + "0")  # (an invalid digest is no name either)
    with pytest.raises(NotFound):
        images.lookup("other@sha256:" + "a" * 64)  # that digest, but another repository
    _image(client, "docker.io/library/x:1", "f")
    client.images.create(Image("docker.io/library/y:1", Descriptor("t/x", "sha256:f" + "0" * 63, 1)))
    with pytest.raises(InvalidArgument, match="ambiguous"):
        images.lookup("f")
