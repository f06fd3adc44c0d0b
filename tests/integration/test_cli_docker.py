"""Containers as a docker user uses them (issue #11): a day's walk (run with a memory limit,
exec, cp in and out, logs --tail, stats, stop, rm; a command that does not exist is 127 and
leaves nothing), ``run`` pulling what is missing and finding images by every name docker
accepts, limits read back from the container's cgroups and an OOM kill, restart policies kept
by the shim, the daily flags, ``-i`` with ``attach``, the logs' streams and times, ``cp``,
``pause``/``top``/``stats``, names.

Every store is under the test's tmp_path; the ``store`` fixture removes its containers
afterwards. Container names are unique per test (cgroups are shared by every store here).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.images.build import Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.mount import mountinfo
from tests.support.cli import CLI_TIMEOUT, run, store_env, unique_name
from tests.support.images import BUSYBOX, busybox_image, find_busybox
from tests.support.network import http_get, iptables_rules
from tests.support.registry import RegistryServer, free_port

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

IMAGE = BUSYBOX
TASKS = "io.containerd.runtime.v2.task"
OVERLAY = "io.containerd.snapshotter.v1.overlayfs"
name = unique_name


@pytest.fixture
def store(busybox_store: Path) -> Path:
    return busybox_store


def wait_for(pred: Callable[[], object], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def inspect(store: Path, ref: str) -> dict[str, object]:
    [info] = json.loads(run(store, "inspect", ref).stdout)
    assert isinstance(info, dict)
    return info


def state(store: Path, ref: str) -> dict[str, object]:
    s = inspect(store, ref)["State"]
    assert isinstance(s, dict)
    return s


def cgroup_dirs(cid: str) -> list[Path]:
    """Every cgroup directory of container ``cid`` (namespace default) on this machine."""
    return [
        Path(f"{m.mount_point}/default/{cid}")
        for m in mountinfo()
        if m.fstype in ("cgroup", "cgroup2") and Path(f"{m.mount_point}/default/{cid}").is_dir()
    ]


def cgroup_value(cid: str, v1: tuple[str, str], v2: str) -> str:
    """A cgroup file of the container: ``v1`` = (controller, file) on cgroup v1, ``v2`` in the
    unified tree otherwise (runc's cgroupfs layout for cgroupsPath ``/default/<cid>``)."""
    p1 = Path("/sys/fs/cgroup") / v1[0] / "default" / cid / v1[1]
    if p1.exists():
        return p1.read_text().strip()
    return (Path("/sys/fs/cgroup/default") / cid / v2).read_text().strip()


def our_mounts(store: Path) -> list[str]:
    return [str(m.mount_point) for m in mountinfo() if str(m.mount_point).startswith(str(store))]


def assert_nothing_left(store: Path, cid: str) -> None:
    """No record, bundle, mount, runc state or cgroup of ``cid`` is left."""
    assert run(store, "ps", "-a", "-q").stdout == ""
    assert not (store / "state" / TASKS / "default" / cid).exists()
    assert not (store / "root" / TASKS / "default" / cid).exists()
    assert not (store / "state" / "runc" / "default" / cid).exists()
    assert [m for m in our_mounts(store) if cid in m] == []
    assert cgroup_dirs(cid) == []


# ---------------------------------------------------------------------------------------------
# The "done when": a docker user's day


def test_a_docker_users_day(store: Path, tmp_path: Path) -> None:
    web, port = name("web"), free_port()
    script = (
        "for i in $(seq 1 8); do echo line $i; done; sleep 0.3; echo warn >&2; mkdir -p /www; "
        "echo '<h1>hello</h1>' > /www/index.html; exec busybox httpd -f -p 8080 -h /www"
    )
    r = run(
        store, "run", "-d", "-p", f"{port}:8080", "--name", web, "--memory", "64m", IMAGE, "sh", "-c", script
    )
    assert r.stdout == f"{web}\n"
    # The limit is real: runc wrote it into the container's memory cgroup.
    assert cgroup_value(web, ("memory", "memory.limit_in_bytes"), "memory.max") == str(64 << 20)
    # The published port answers on the host's 127.0.0.1 (the session's test network: conftest).
    assert http_get(f"http://127.0.0.1:{port}/index.html") == "<h1>hello</h1>\n"
    ports = inspect(store, web)["NetworkSettings"]["Ports"]  # type: ignore[index]
    assert ports == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}

    # exec: the server answers inside the container.
    get = ["exec", web, "busybox", "wget", "-qO-", "http://127.0.0.1:8080/index.html"]
    wait_for(lambda: run(store, *get, ok=False).stdout == "<h1>hello</h1>\n", what="httpd")

    # cp a file in, serve it; cp one out, and a directory as a tar stream.
    page = tmp_path / "page.html"
    page.write_text("from the host\n")
    run(store, "cp", str(page), f"{web}:/www/")
    assert run(store, "exec", web, "busybox", "wget", "-qO-", "http://127.0.0.1:8080/page.html").stdout == (
        "from the host\n"
    )
    out = tmp_path / "out.html"
    run(store, "cp", f"{web}:/www/index.html", str(out))
    assert out.read_text() == "<h1>hello</h1>\n"
    raw = subprocess.run(
        [sys.executable, "-m", "ctrstore", "cp", f"{web}:/www", "-"],
        capture_output=True,
        env=store_env(store),
        timeout=CLI_TIMEOUT,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(raw)) as t:
        assert sorted(t.getnames()) == ["www", "www/index.html", "www/page.html"]

    # logs --tail 5: the last five lines, each on the stream it was written to.
    r = run(store, "logs", "--tail", "5", web)
    assert (r.stdout, r.stderr) == ("line 5\nline 6\nline 7\nline 8\n", "warn\n")

    # stats --no-stream: read from the cgroup, the 64 MiB limit shown.
    r = run(store, "stats", "--no-stream", web)
    header, row = r.stdout.splitlines()
    assert header.split()[:3] == ["CONTAINER", "ID", "NAME"] and "MEM USAGE / LIMIT" in header
    assert row.split()[:2] == [web[:12], web] and "/ 64MiB" in row and row.split()[-1] == "1"

    # stop (httpd as PID 1 ignores SIGTERM: SIGKILL after -t), rm: nothing is left.
    run(store, "stop", "-t", "1", web)
    assert state(store, web)["ExitCode"] == 137
    run(store, "rm", web)
    assert_nothing_left(store, web)
    assert [r for r in iptables_rules() if f"default-{web}" in r] == []  # no DNAT, no masquerade

    # A command that does not exist: 127, one clear line (no runc log line), nothing left.
    r = run(store, "run", "--rm", IMAGE, "nosuchcmd", ok=False)
    assert r.returncode == 127, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("ctrstore: ")
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in r.stderr
    assert "level=" not in r.stderr and "time=" not in r.stderr
    assert run(store, "ps", "-a", "-q").stdout == "" and our_mounts(store) == []
    assert sorted(os.listdir(store / "root" / OVERLAY / "snapshots")) == ["1", "2", "3"]


def test_exit_statuses(store: Path) -> None:
    assert run(store, "run", "--rm", IMAGE, "sh", "-c", "exit 7", ok=False).returncode == 7
    r = run(store, "run", "--rm", IMAGE, "/etc/passwd", ok=False)  # not executable
    assert r.returncode == 126 and "permission denied" in r.stderr
    r = run(store, "run", "--rm", "--no-such-flag", IMAGE, "true", ok=False)
    assert r.returncode == 125 and "No such option" in r.stderr
    r = run(store, "run", "--rm", "--pull", "never", "localhost/nothere:1", "true", ok=False)
    assert r.returncode == 125 and r.stderr.startswith("ctrstore: not found: no such image")
    r = run(store, "run", "--rm", "--platform", "linux/s390x", IMAGE, "true", ok=False)
    assert r.returncode == 125 and "no manifest for platform linux/s390x" in r.stderr
    assert run(store, "run", "--rm", "--platform", "linux/amd64", IMAGE, "true", ok=False).returncode == (
        0 if os.uname().machine == "x86_64" else 125
    )
    r = run(store, "run", "--rm", "-m", "1k", IMAGE, "true", ok=False)
    assert r.returncode == 125 and "minimum is 6MB" in r.stderr
    r = run(store, "run", "--rm", "--restart", "always", IMAGE, "true", ok=False)
    assert r.returncode == 125 and "--rm and --restart" in r.stderr
    r = run(store, "run", "-d", "--restart", "sometimes", IMAGE, "true", ok=False)
    assert r.returncode == 125 and "invalid restart policy 'sometimes'" in r.stderr
    # exec: the command's status, 127/126 for one that cannot run, 1 when ctrstore fails.
    box = name("box")
    run(store, "run", "-d", "--name", box, IMAGE, "sleep", "1000")
    assert run(store, "exec", box, "sh", "-c", "exit 4", ok=False).returncode == 4
    r = run(store, "exec", box, "nosuch", ok=False)
    assert r.returncode == 127 and r.stderr.count("\n") == 1 and "level=" not in r.stderr
    assert run(store, "exec", box, "/etc", ok=False).returncode == 126
    assert run(store, "exec", "nosuchcontainer", "true", ok=False).returncode == 1
    run(store, "rm", "-f", box)
    assert run(store, "ps", "-a", "-q").stdout == ""


# ---------------------------------------------------------------------------------------------
# Images: run pulls what is missing, every command finds images by docker's names


def _mirror_docker_hub(tmp_path: Path, registry: RegistryServer) -> Path:
    """A certs.d dir sending docker.io's pulls to the test registry (as a mirror)."""
    d = tmp_path / "certs.d" / "docker.io"
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(
        f'server = "https://registry-1.docker.io"\n[host."http://{registry.host}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    return d.parent


def test_run_pulls_and_names_images_as_docker(tmp_path: Path, registry: RegistryServer) -> None:
    src = Client(root=tmp_path / "src", state=tmp_path / "src-state")
    busybox_image(src.content, src.images, registry.ref("library/alpine:latest"))
    src.push(registry.ref("library/alpine:latest"))
    src.close()
    store = tmp_path / "store"
    hosts = str(_mirror_docker_hub(tmp_path, registry))
    try:
        # run of a short name that is not here: pulled (progress on stderr), then run.
        r = run(store, "run", "--rm", "--hosts-dir", hosts, "alpine", "echo", "hi")
        assert r.stdout == "hi\n"
        assert "Unable to find image 'alpine' locally" in r.stderr and "layer-sha256:" in r.stderr
        full = "docker.io/library/alpine:latest"
        assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == f"{full}\n"
        # Found by every name docker takes, without pulling again.
        [img] = json.loads(run(store, "images", "inspect", "alpine").stdout)
        digest = img["Id"]
        for ref in ("alpine", "alpine:latest", full, f"alpine@{digest}", digest[7:19], digest):
            r = run(store, "run", "--rm", "--pull", "never", ref, "true", ok=False)
            assert r.returncode == 0, (ref, r.stderr)
            assert "Unable to find" not in r.stderr
        # tag, inspect, export, push, rmi take them too; a new name is normalised.
        run(store, "tag", "alpine", "mine:1")
        assert "docker.io/library/mine:1" in run(store, "images", "ls", "--format", "{{.Name}}").stdout
        assert run(store, "run", "--rm", "mine:1", "true").returncode == 0
        assert json.loads(run(store, "images", "inspect", digest[7:19]).stdout)[0]["Id"] == digest
        run(store, "images", "export", str(tmp_path / "a.tar"), "alpine")
        assert tarfile.is_tarfile(tmp_path / "a.tar")
        run(store, "push", "--plain-http", "alpine", registry.ref("copies/alpine:2"))
        # An ID prefix naming two images removes one name only with -f.
        r = run(store, "rmi", digest[7:19], ok=False)
        assert r.returncode == 1 and "2 names" in r.stderr and "rmi -f" in r.stderr
        run(store, "rmi", "mine:1")
        assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == f"{full}\n"
        # --pull always fetches again; --pull never fails for what is not here.
        r = run(store, "run", "--rm", "--pull", "always", "--hosts-dir", hosts, "alpine", "true")
        assert "Unable to find" not in r.stderr and "resolv" in r.stderr
        r = run(store, "run", "--rm", "--pull", "never", "busybox", "true", ok=False)
        assert r.returncode == 125 and "no such image: busybox" in r.stderr
        r = run(store, "run", "--rm", "-q", "--hosts-dir", hosts, "nosuchrepo", "true", ok=False)
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        # rmi of an image ID with one name left removes it.
        run(store, "rmi", digest[7:19])
        assert run(store, "images", "ls", "--format", "{{.Name}}").stdout == ""
    finally:
        c = Client(root=store / "root", state=store / "state")
        for ctr in c.containers.store.list():
            c.containers.delete(ctr.id, force=True)
        c.close()


# ---------------------------------------------------------------------------------------------
# Limits: in the spec, in the cgroup, enforced


def test_limits_are_in_the_cgroup(store: Path) -> None:
    box = name("lim")
    run(
        store,
        "run", "-d", "--name", box, "-m", "32m", "--memory-swap", "48m", "--cpus", "0.5",
        "--cpu-shares", "512", "--pids-limit", "20", IMAGE, "sleep", "1000",
    )  # fmt: skip
    info = inspect(store, box)
    assert info["HostConfig"]["Memory"] == 32 << 20  # type: ignore[index]
    bundle = store / "state" / "io.containerd.runtime.v2.task" / "default" / str(info["Id"])
    spec = json.loads((bundle / "config.json").read_text())
    res = spec["linux"]["resources"]
    assert res["memory"]["limit"] == 32 << 20 and res["cpu"] == {
        "quota": 50000,
        "period": 100000,
        "shares": 512,
    }
    assert res["pids"] == {"limit": 20}
    assert cgroup_value(box, ("memory", "memory.limit_in_bytes"), "memory.max") == str(32 << 20)
    if Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists():
        assert cgroup_value(box, ("memory", "memory.memsw.limit_in_bytes"), "") == str(48 << 20)
    assert cgroup_value(box, ("cpu", "cpu.cfs_quota_us"), "cpu.max").split()[0] == "50000"
    assert cgroup_value(box, ("pids", "pids.max"), "pids.max") == "20"
    # More processes than the limit: fork fails inside.
    r = run(store, "exec", box, "sh", "-c", "for i in $(seq 1 30); do sleep 5 & done; wait", ok=False)
    assert "Resource temporarily unavailable" in r.stderr or "can't fork" in r.stderr, r.stderr
    run(store, "rm", "-f", box)
    assert cgroup_dirs(box) == []


def test_oom_kill_under_memory_limit(store: Path) -> None:
    hog = name("hog")
    grab = 'a=$(head -c 60000000 /dev/zero | tr "\\0" x); echo survived ${#a}'
    r = run(store, "run", "--name", hog, "-m", "16m", IMAGE, "sh", "-c", grab, ok=False)
    assert r.returncode == 137 and "survived" not in r.stdout
    s = state(store, hog)
    assert s["ExitCode"] == 137 and s["OOMKilled"] is True
    # Without the limit the same allocation succeeds.
    r = run(store, "run", "--rm", IMAGE, "sh", "-c", grab)
    assert r.stdout == "survived 60000000\n"
    run(store, "rm", hog)
    assert_nothing_left(store, hog)


# ---------------------------------------------------------------------------------------------
# Restart policies: the shim restarts the task


def test_restart_on_failure_with_a_limit(store: Path) -> None:
    flaky = name("flaky")
    run(
        store,
        "run",
        "-d",
        "--name",
        flaky,
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "echo run; exit 3",
    )
    wait_for(lambda: state(store, flaky)["Status"] == "exited", what="the last restart to end")
    info = inspect(store, flaky)
    assert info["RestartCount"] == 2 and state(store, flaky)["ExitCode"] == 3
    assert run(store, "logs", flaky).stdout == "run\nrun\nrun\n"  # three runs, one log
    assert run(store, "wait", flaky).stdout == "3\n"
    # A success is not restarted by on-failure.
    ok = name("ok")
    run(store, "run", "-d", "--name", ok, "--restart", "on-failure", IMAGE, "true")
    assert run(store, "wait", ok).stdout == "0\n" and inspect(store, ok)["RestartCount"] == 0
    run(store, "rm", flaky, ok)


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_always_until_stopped(store: Path, policy: str) -> None:
    loop = name("loop")
    run(
        store,
        "run",
        "-d",
        "--name",
        loop,
        "--restart",
        policy,
        IMAGE,
        "sh",
        "-c",
        "echo up; sleep 0.2; exit 1",
    )
    wait_for(lambda: int(str(inspect(store, loop)["RestartCount"])) >= 2, what="two restarts")
    # ps shows it waiting for its next start as docker does: "Restarting (<last status>) ...".
    wait_for(lambda: "Restarting (1) " in run(store, "ps").stdout, what="ps showing the restart")
    run(store, "stop", loop)
    assert state(store, loop)["Status"] == "exited"
    count = inspect(store, loop)["RestartCount"]
    time.sleep(1)
    assert inspect(store, loop)["RestartCount"] == count and state(store, loop)["Status"] == "exited"
    # start runs it under its policy again; kill (SIGKILL) ends it for good too.
    run(store, "start", loop)
    wait_for(lambda: int(str(inspect(store, loop)["RestartCount"])) >= 1, what="a restart after start")
    wait_for(lambda: state(store, loop)["Status"] == "running", what="running again")
    run(store, "kill", loop, ok=False)
    wait_for(lambda: state(store, loop)["Status"] == "exited", what="the kill")
    time.sleep(0.5)
    assert state(store, loop)["Status"] == "exited"
    run(store, "rm", loop)
    assert_nothing_left(store, loop)


# ---------------------------------------------------------------------------------------------
# The daily flags


def test_entrypoint_env_file_labels_init(store: Path, tmp_path: Path) -> None:
    r = run(store, "run", "--rm", "--entrypoint", "echo", IMAGE, "a", "b")
    assert r.stdout == "a b\n"
    r = run(store, "run", "--rm", "--entrypoint", "", IMAGE, "echo", "no", "entrypoint")
    assert r.stdout == "no entrypoint\n"
    env = tmp_path / "env"
    env.write_text("# a comment\nA=from-file\n\nB=two words\nC=file\n")
    r = run(
        store, "run", "--rm", "--env-file", str(env), "-e", "C=flag", IMAGE, "sh", "-c", 'echo "$A|$B|$C"'
    )
    assert r.stdout == "from-file|two words|flag\n"
    r = run(store, "run", "--rm", "--env-file", str(tmp_path / "nope"), IMAGE, "true", ok=False)
    assert r.returncode == 125 and "env file" in r.stderr
    labelled = name("lab")
    run(store, "create", "--name", labelled, "-l", "tier=web", "--label", "team=a", IMAGE, "true")
    labels = inspect(store, labelled)["Config"]["Labels"]  # type: ignore[index]
    assert isinstance(labels, dict) and labels["tier"] == "web" and labels["team"] == "a"
    run(store, "rm", labelled)
    if not any(shutil.which(n) for n in ("tini-static", "catatonit", "tini", "docker-init")):
        pytest.skip("no init binary on this host (apt-get install tini)")
    r = run(store, "run", "--rm", "--init", IMAGE, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo")
    assert r.stdout.startswith("/sbin/docker-init -- sh -c"), r.stdout
    # The init reaps an orphaned zombie and passes the exit status on.
    r = run(store, "run", "--rm", "--init", IMAGE, "sh", "-c", "exit 9", ok=False)
    assert r.returncode == 9


def test_image_entrypoint_and_stop_signal(store: Path) -> None:
    # An image whose ENTRYPOINT is echo and whose StopSignal is SIGUSR1:
    c = Client(root=store / "root", state=store / "state")
    layer = tar_from_entries(
        [
            Entry("bin", "dir"),
            Entry("bin/busybox", data=find_busybox().read_bytes(), mode=0o755),
            *(Entry(f"bin/{a}", "symlink", link="busybox") for a in ("sh", "echo", "sleep", "true")),
        ]
    )
    spec = ImageSpec(cmd=("default", "args"), entrypoint=("echo", "entry:"), stop_signal="SIGUSR1")
    build_image(c.content, c.images, "localhost/entry:1", [layer], spec)
    c.close()
    assert run(store, "run", "--rm", "localhost/entry:1").stdout == "entry: default args\n"
    assert run(store, "run", "--rm", "localhost/entry:1", "mine").stdout == "entry: mine\n"
    assert (
        run(store, "run", "--rm", "--entrypoint", "sh", "localhost/entry:1", "-c", "echo $0").stdout == "sh\n"
    )
    # stop sends the image's StopSignal (USR1, trapped: exit 42 at once, no SIGKILL).
    trap = name("trap")
    script = "trap 'exit 42' USR1; while :; do sleep 0.05; done"
    run(store, "run", "-d", "--name", trap, "--entrypoint", "sh", "localhost/entry:1", "-c", script)
    t = time.monotonic()
    run(store, "stop", "-t", "20", trap)
    assert time.monotonic() - t < 10 and state(store, trap)["ExitCode"] == 42
    # --stop-signal overrides it.
    other = name("other")
    run(store, "run", "-d", "--name", other, "--stop-signal", "HUP", IMAGE, "sh", "-c",
        "trap 'exit 43' HUP; while :; do sleep 0.05; done")  # fmt: skip
    run(store, "stop", other)
    assert state(store, other)["ExitCode"] == 43
    run(store, "rm", trap, other)


def test_tmpfs_ulimit_shm_device_caps(store: Path) -> None:
    script = (
        "mount | grep ' /scratch ' | grep -o '(.*)'; df -k /dev/shm | tail -1 | awk '{print $2}'; "
        "ulimit -n; ulimit -Hn; ls -l /dev/mynull | cut -c1; grep CapEff /proc/self/status"
    )
    r = run(
        store,
        "run", "--rm", "--tmpfs", "/scratch:size=1m", "--shm-size", "8m", "--ulimit", "nofile=100:200",
        "--device", "/dev/null:/dev/mynull:rw", "--cap-drop", "ALL", IMAGE, "sh", "-c", script,
    )  # fmt: skip
    lines = r.stdout.splitlines()
    assert "noexec" in lines[0] and "nosuid" in lines[0] and "size=1024k" in lines[0]
    assert lines[1:5] == ["8192", "100", "200", "c"]
    assert lines[5].endswith("0000000000000000")
    r = run(store, "run", "--rm", "--tmpfs", "/x:exec", IMAGE, "sh", "-c", "mount | grep ' /x '")
    assert "noexec" not in r.stdout
    r = run(store, "run", "--rm", "--privileged", IMAGE, "sh", "-c", "grep CapEff /proc/self/status")
    assert not r.stdout.strip().endswith("0000000000000000")
    for bad, msg in (
        (["--ulimit", "nofile=9:1"], "above the hard limit"),
        (["--ulimit", "bogus=1"], "invalid ulimit"),
        (["--device", "/nonexistent"], "no such device"),
        (["--tmpfs", "relative"], "absolute path"),
        (["--cpus", "1000"], "range of CPUs"),
    ):
        r = run(store, "run", "--rm", *bad, IMAGE, "true", ok=False)
        assert r.returncode == 125 and msg in r.stderr, (bad, r.stderr)
    assert run(store, "ps", "-a", "-q").stdout == ""


def test_names_are_unique_and_rename(store: Path) -> None:
    a, b = name("a"), name("b")
    run(store, "run", "-d", "--name", a, IMAGE, "sleep", "1000")
    r = run(store, "run", "-d", "--name", a, IMAGE, "true", ok=False)
    assert r.returncode == 125 and f'the container name "{a}" is already in use' in r.stderr
    run(store, "rename", a, b)
    assert run(store, "exec", b, "true").returncode == 0
    rows = run(store, "ps").stdout.splitlines()[1:]
    assert [row.split()[-1] for row in rows] == [b]
    other = name("other")
    run(store, "create", "--name", other, IMAGE, "true")
    r = run(store, "rename", other, b, ok=False)
    assert r.returncode == 1 and "already in use" in r.stderr
    run(store, "rm", "-f", a, other)
    assert run(store, "ps", "-a", "-q").stdout == ""


# ---------------------------------------------------------------------------------------------
# stdin: -i attached, -i -d with attach, detaching


def test_interactive_runs_and_attach(store: Path) -> None:
    r = run(store, "run", "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z; echo done", stdin=b"hello\n")
    assert r.stdout == "HELLO\ndone\n"
    # Without -i the container's stdin is empty (docker's), whatever ours holds.
    r = run(store, "run", "--rm", IMAGE, "sh", "-c", "cat; echo done", stdin=b"ignored\n")
    assert r.stdout == "done\n"
    # -d -i: stdin stays open; attach types into it and exits with the container.
    reader = name("reader")
    run(store, "run", "-d", "-i", "--name", reader, IMAGE, "sh", "-c", "read line; echo got $line; exit 5")
    r = run(store, "attach", reader, stdin=b"world\n", ok=False)
    assert (r.returncode, r.stdout) == (5, "got world\n")
    assert run(store, "logs", reader).stdout == "got world\n"
    r = run(store, "attach", reader, ok=False)
    assert r.returncode == 1 and "not running" in r.stderr
    run(store, "rm", reader)


def test_signals_reach_an_attached_container(store: Path) -> None:
    """docker's --sig-proxy: SIGTERM sent to an attached run goes to the container."""
    script = "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
    p = subprocess.Popen(
        [sys.executable, "-m", "ctrstore", "run", "--rm", IMAGE, "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=store_env(store),
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert (p.returncode, out) == (7, b"got TERM\n"), err
    assert run(store, "ps", "-a", "-q").stdout == ""


def test_detach_keys_leave_it_running(store: Path) -> None:
    talk = name("talk")
    run(store, "run", "-d", "-i", "-t", "--name", talk, IMAGE, "sh")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "ctrstore", "attach", talk],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=store_env(store),
            start_new_session=True,
        )
        os.close(slave)
        seen = b""

        def read_some() -> bytes:
            ready, _, _ = select.select([master], [], [], 0.2)
            return os.read(master, 4096) if ready else b""

        time.sleep(0.5)
        os.write(master, b"echo $((6*7))\r")
        deadline = time.monotonic() + 15
        while b"42" not in seen and time.monotonic() < deadline:
            seen += read_some()
        assert b"42" in seen, seen
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        assert p.wait(timeout=15) == 0
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert state(store, talk)["Status"] == "running"
    run(store, "rm", "-f", talk)


# ---------------------------------------------------------------------------------------------
# Logs as docker's


def test_logs_streams_times_tail_since_until(store: Path) -> None:
    talk = name("talk")
    script = "echo one; echo err1 >&2; sleep 1.2; echo two; echo err2 >&2; sleep 0.3; printf 'no newline'"
    r = run(store, "run", "--name", talk, IMAGE, "sh", "-c", script)  # attached runs are logged too
    assert r.stdout == "one\ntwo\nno newline" and r.stderr == "err1\nerr2\n"
    r = run(store, "logs", talk)
    assert (r.stdout, r.stderr) == ("one\ntwo\nno newline", "err1\nerr2\n")
    r = run(store, "logs", "-t", talk)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z "
    assert re.fullmatch(f"{stamp}one\n{stamp}two\n{stamp}no newline", r.stdout), r.stdout
    times = [
        datetime.fromisoformat(line[:26] + "+00:00").replace(tzinfo=UTC) for line in r.stdout.splitlines()
    ]
    middle = times[0].timestamp() + 0.6
    assert run(store, "logs", "--tail", "1", talk).stdout == "no newline"
    assert run(store, "logs", "--tail", "0", talk).stdout == ""
    r = run(store, "logs", "--since", f"{middle:.3f}", talk)
    assert (r.stdout, r.stderr) == ("two\nno newline", "err2\n")
    r = run(store, "logs", "--until", f"{middle:.3f}", talk)
    assert (r.stdout, r.stderr) == ("one\n", "err1\n")
    assert run(store, "logs", "--since", "1h", talk).stdout == "one\ntwo\nno newline"
    assert run(store, "logs", "--until", "1h", talk).stdout == ""
    r = run(store, "logs", "--since", "yesterday", talk, ok=False)
    assert r.returncode == 1 and "invalid time" in r.stderr
    run(store, "rm", talk)


def test_logs_follow_ends_with_the_container(store: Path) -> None:
    tick = name("tick")
    run(store, "run", "-d", "--name", tick, IMAGE, "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done")
    t = time.monotonic()
    assert run(store, "logs", "-f", tick).stdout == "1\n2\n3\n"
    assert time.monotonic() - t > 0.4
    run(store, "rm", tick)


# ---------------------------------------------------------------------------------------------
# cp


def test_cp_both_ways_running_and_stopped(store: Path, tmp_path: Path) -> None:
    box = name("box")
    run(store, "run", "-d", "--name", box, "--tmpfs", "/scratch", IMAGE, "sleep", "1000")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A\n")
    (tree / "sub" / "b.txt").write_text("B\n")
    (tree / "link").symlink_to("a.txt")
    run(store, "cp", str(tree), f"{box}:/srv")  # /srv does not exist: created with tree's contents
    run(store, "cp", str(tree), f"{box}:/tmp")  # /tmp exists: tree goes into it
    run(store, "cp", f"{tree}/.", f"{box}:/scratch")  # contents only, into a tmpfs mount inside
    r = run(
        store,
        "exec",
        box,
        "sh",
        "-c",
        "cat /srv/a.txt /tmp/tree/sub/b.txt /scratch/link; stat -c %u /srv/a.txt",
    )
    assert r.stdout == "A\nB\nA\n0\n"
    # Out: a file to a new name, a directory into an existing one, a tar stream.
    run(store, "exec", box, "sh", "-c", "mkdir -p /data/d && echo made > /data/d/f")
    run(store, "cp", f"{box}:/data/d/f", str(tmp_path / "f.out"))
    assert (tmp_path / "f.out").read_text() == "made\n"
    (tmp_path / "into").mkdir()
    run(store, "cp", f"{box}:/data/d", str(tmp_path / "into"))
    assert (tmp_path / "into" / "d" / "f").read_text() == "made\n"
    # A tar stream in (-) and out.
    buf = BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("streamed.txt")
        info.size = 3
        t.addfile(info, BytesIO(b"hi\n"))
    run(store, "cp", "-", f"{box}:/tmp", stdin=buf.getvalue())
    assert run(store, "exec", box, "cat", "/tmp/streamed.txt").stdout == "hi\n"
    # Stopped: the rootfs is read directly.
    run(store, "stop", "-t", "0", box)
    run(store, "cp", f"{box}:/tmp/streamed.txt", str(tmp_path / "s.txt"))
    assert (tmp_path / "s.txt").read_text() == "hi\n"
    run(store, "cp", str(tmp_path / "s.txt"), f"{box}:/tmp/again.txt")
    run(store, "start", box)
    assert run(store, "exec", box, "cat", "/tmp/again.txt").stdout == "hi\n"
    # Errors name what is wrong.
    r = run(store, "cp", f"{box}:/nothere", str(tmp_path / "x"), ok=False)
    assert r.returncode == 1 and "no such file or directory in the container: /nothere" in r.stderr
    r = run(store, "cp", str(tmp_path / "nothere"), f"{box}:/tmp", ok=False)
    assert r.returncode == 1 and "on this host" in r.stderr
    run(store, "rm", "-f", box)


def test_cp_cannot_be_led_out_of_the_container(store: Path, tmp_path: Path) -> None:
    """Symlinks the container plants resolve inside its root: cp never reads or writes the
    host's files through them."""
    evil = name("evil")
    run(store, "run", "-d", "--name", evil, IMAGE, "sleep", "1000")
    run(
        store,
        "exec",
        evil,
        "sh",
        "-c",
        "ln -s / /up; ln -s ../../../../../../etc /deep; echo mine > /etc/secret",
    )
    host_secret = tmp_path / "host-secret"
    host_secret.write_text("the host's\n")
    r = run(store, "cp", f"{evil}:/up{host_secret}", str(tmp_path / "leak"), ok=False)
    assert r.returncode == 1 and not (tmp_path / "leak").exists()
    run(store, "cp", f"{evil}:/deep/secret", str(tmp_path / "got"))
    assert (tmp_path / "got").read_text() == "mine\n"  # the container's /etc, not the host's
    marker = tmp_path / "written-through"
    (tmp_path / "payload").write_text("x\n")
    run(store, "exec", evil, "mkdir", "-p", str(tmp_path))
    run(store, "cp", str(tmp_path / "payload"), f"{evil}:/up{marker}")
    assert not marker.exists()  # landed in the container's own tree
    assert run(store, "exec", evil, "cat", str(marker)).stdout == "x\n"
    run(store, "rm", "-f", evil)


# ---------------------------------------------------------------------------------------------
# pause, top, stats, restart


def test_pause_top_stats_restart(store: Path) -> None:
    box = name("box")
    run(store, "run", "-d", "--name", box, IMAGE, "sh", "-c", "sleep 1000 & sleep 1001")
    r = run(store, "top", box)
    header, *rows = r.stdout.splitlines()
    assert header.split()[:3] == ["UID", "PID", "PPID"] and header.split()[-1] == "CMD"
    # (sh runs its last command in its own place: two processes)
    assert sorted(row.split(None, 7)[-1] for row in rows) == ["sleep 1000", "sleep 1001"]
    r = run(store, "top", box, "-o", "pid,comm")
    assert r.stdout.split()[:2] == ["PID", "COMMAND"] and r.stdout.count("sleep") == 2
    run(store, "pause", box)
    assert "Paused" in run(store, "ps").stdout
    assert cgroup_value(box, ("freezer", "freezer.state"), "cgroup.freeze") in ("FROZEN", "1")
    r = run(store, "pause", box, ok=False)
    assert r.returncode == 1 and "not running" in r.stderr
    run(store, "unpause", box)
    assert " Up" in run(store, "ps").stdout
    r = run(store, "stats", "--no-stream")
    assert r.stdout.splitlines()[1].split()[-1] == "2"  # the two sleeps
    pid = state(store, box)["Pid"]
    run(store, "restart", "-t", "0", box)
    s = state(store, box)
    assert s["Status"] == "running" and s["Pid"] != pid
    run(store, "rm", "-f", box)
    assert_nothing_left(store, box)


def test_run_help_describes_every_flag() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ctrstore", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    options = re.findall(r"^\s+(-\w, )?(--[\w-]+)", r.stdout, re.M)
    names = {o[1] for o in options}
    for flag in (
        "--entrypoint", "--env-file", "--label", "--privileged", "--cap-add", "--cap-drop", "--tmpfs",
        "--device", "--init", "--platform", "--ulimit", "--memory", "--memory-swap", "--cpus",
        "--cpu-shares", "--pids-limit", "--shm-size", "--stop-signal", "--restart", "--pull",
        "--interactive", "--detach", "--name", "--rm",
    ):  # fmt: skip
        assert flag in names, flag
    # Every option line has a description after it.
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+(-\w, )?--[\w/-]+( [A-Z\[\]:|=,./<>-]+)?\s*$", line)
        assert m is None, f"an option without a description: {line!r}"
