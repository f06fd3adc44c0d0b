"""Rootless pieces that need no user namespace: subid lines, the spec and network changes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from ctrstore.errdefs import FailedPrecondition
from ctrstore.rootless import spec as rspec
from ctrstore.rootless import subids


def test_subid_ranges_by_name_or_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("bob:200000:65536\nalice:100000:65536\n# x\n1000:300000:10\nalice:bad:1\nalice:5:0\n")
    assert subids.ranges(f, "alice", 1000) == [subids.IdRange(100000, 65536), subids.IdRange(300000, 10)]
    assert subids.ranges(f, "carol", 1001) == []
    assert subids.ranges(tmp_path / "missing", "alice", 1000) == []


def test_no_subids_names_the_file_and_the_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(subids, "SUBUID", tmp_path / "subuid")
    monkeypatch.setattr(subids, "SUBGID", tmp_path / "subgid")
    (tmp_path / "subuid").write_text("alice:100000:65536\n")
    with pytest.raises(
        FailedPrecondition, match=rf"no subordinate ids for user alice in {tmp_path}/subgid: add"
    ):
        subids.require("alice", 1000, 1000)
    with pytest.raises(
        FailedPrecondition, match="usermod --add-subuids 100000-165535 --add-subgids 100000-165535 bob"
    ):
        subids.require("bob", 1001, 1001)


def _spec(net: bool) -> dict[str, Any]:
    return {
        "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}],
        "linux": {
            "cgroupsPath": "/default/x",
            "resources": {"devices": [{"allow": False}], "memory": {"limit": 1 << 26}},
            "namespaces": [{"type": "pid"}, *([{"type": "network"}] if net else [])],
        },
    }


def test_rootless_spec_has_no_cgroups_and_warns_of_limits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rspec, "is_rootless", lambda: True)
    spec = _spec(net=True)
    rspec.adapt_spec(spec)
    assert "cgroupsPath" not in spec["linux"] and "resources" not in spec["linux"]
    assert spec["mounts"][0]["type"] == "sysfs"
    assert "resource limits (memory) cannot apply" in capsys.readouterr().err
    spec = _spec(net=False)  # --network host: sysfs cannot be mounted, the host's is bound
    rspec.adapt_spec(spec)
    assert spec["mounts"][0]["type"] == "bind" and spec["mounts"][0]["source"] == "/sys"


HYBRID = """\
25 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
28 26 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
"""
UNIFIED = """\
25 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate
"""


def test_limits_warning_names_the_cgroup_layout() -> None:
    assert "cgroup v1 (or the hybrid layout)" in rspec.limits_unavailable_reason(HYBRID)
    assert "cgroup v2" in rspec.limits_unavailable_reason(UNIFIED)
    assert "Delegate=yes" in rspec.limits_unavailable_reason(UNIFIED)
    here = rspec.limits_unavailable_reason()  # this machine: whatever it has, one of the two
    assert here in (rspec.limits_unavailable_reason(HYBRID), rspec.limits_unavailable_reason(UNIFIED))


def test_root_spec_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rspec, "is_rootless", lambda: False)
    spec = _spec(net=False)
    rspec.adapt_spec(spec)
    assert spec == _spec(net=False)
    assert rspec.adapt_network(["bridge"], 1) is None


def test_rootless_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctrstore.rootless import slirp

    monkeypatch.setattr(rspec, "is_rootless", lambda: True)
    assert rspec.adapt_network(["host"], 0) is None
    assert rspec.adapt_network(["none"], 0) is None
    assert rspec.adapt_network(["slirp4netns"], 1) is None
    # With slirp4netns installed the default network is slirp4netns, -p included (podman's).
    monkeypatch.setattr(slirp, "unavailable_reason", lambda: None)
    assert rspec.adapt_network(["bridge"], 0) == ["slirp4netns"]
    assert rspec.adapt_network(["bridge"], 2) == ["slirp4netns"]
    # Without it, loopback only, and -p is refused.
    monkeypatch.setattr(slirp, "unavailable_reason", lambda: "slirp4netns is not installed")
    assert rspec.adapt_network(["bridge"], 0) == ["none"]
    with pytest.raises(FailedPrecondition, match="published ports"):
        rspec.adapt_network(["bridge"], 1)
    with pytest.raises(FailedPrecondition, match="network mynet needs root"):
        rspec.adapt_network(["mynet"], 0)


def test_slirp4netns_network_options() -> None:
    from ctrstore.errdefs import InvalidArgument
    from ctrstore.network import NetworkOptions

    opts = NetworkOptions.from_flags(["slirp4netns"], publish=["8080:80"])
    assert opts.mode == "slirp4netns" and opts.ports[0].host_port == 8080
    with pytest.raises(InvalidArgument, match="slirp4netns cannot be combined"):
        NetworkOptions.from_flags(["slirp4netns", "bridge"])


def test_pasta_default_options_and_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """pasta is the default rootless network only where slirp4netns is not installed; it is a
    network of its own (not combined), takes -p, and is refused as root; its -p become pasta's
    -t/-u specs, none for a protocol with no port (pasta's default would forward all)."""
    import shutil

    from ctrstore.errdefs import InvalidArgument
    from ctrstore.network import NetworkOptions
    from ctrstore.rootless import pasta, slirp

    opts = NetworkOptions.from_flags(["pasta"], publish=["127.0.0.1:8080:80", "5353:53/udp"])
    assert opts.mode == "pasta"
    assert pasta.port_args(opts.ports) == ["-t", "127.0.0.1/8080:80", "-u", "5353:53"]
    assert pasta.port_args([]) == ["-t", "none", "-u", "none"]
    with pytest.raises(InvalidArgument, match="pasta cannot be combined"):
        NetworkOptions.from_flags(["pasta", "bridge"])

    monkeypatch.setattr(rspec, "is_rootless", lambda: False)
    with pytest.raises(FailedPrecondition, match="--network pasta is for rootless containers"):
        rspec.adapt_network(["pasta"], 0)
    monkeypatch.setattr(rspec, "is_rootless", lambda: True)
    assert rspec.adapt_network(["pasta"], 1) is None
    which = shutil.which
    installed = {"slirp4netns", "pasta"}
    monkeypatch.setattr(shutil, "which", lambda n: which(n) if n in installed else None)
    monkeypatch.setattr(slirp, "unavailable_reason", lambda: None)
    monkeypatch.setattr(pasta, "unavailable_reason", lambda: None)
    assert rspec.adapt_network(["bridge"], 1) == ["slirp4netns"]  # slirp4netns stays the default
    installed.discard("slirp4netns")
    monkeypatch.setattr(slirp, "unavailable_reason", lambda: "slirp4netns is not installed")
    assert rspec.adapt_network(["bridge"], 1) == ["pasta"]
    installed.discard("pasta")
    monkeypatch.setattr(pasta, "unavailable_reason", lambda: "pasta is not installed")
    with pytest.raises(FailedPrecondition, match="neither slirp4netns nor pasta is installed"):
        rspec.adapt_network(["bridge"], 1)


def test_record_helper_is_stopped_only_if_it_is_the_same_process(tmp_path: Path) -> None:
    """The record keeps slirp4netns's pid and start time: a process with the same pid but
    another start time (a reused pid) is not the helper and is not killed."""
    import subprocess

    from ctrstore.network.attach import Record, helper_alive, stop_helper
    from ctrstore.runtime._proc import process_start_time

    p = subprocess.Popen(["sleep", "60"])
    try:
        helper = {"name": "sleep", "pid": p.pid, "start": process_start_time(p.pid)}
        rec = Record("ns-id", str(tmp_path / "netns"), [], helper=helper)
        rec.save(tmp_path / "network.json")
        loaded = Record.load(tmp_path / "network.json")
        assert loaded is not None and loaded.helper == helper
        other = dict(helper, start="1")
        assert not helper_alive(other)
        stop_helper(other)
        assert p.poll() is None  # not the same process: left alone
        stop_helper(helper)
        assert not helper_alive(helper)  # (stop_helper may have reaped it: its exit status is gone)
        p.wait(timeout=5)
    finally:
        p.kill()
        p.wait()


def test_a_zombie_pause_process_is_not_taken_for_alive(tmp_path: Path) -> None:
    """A killed pause process whose parent has not reaped it keeps its pid and start time; a
    command must make a new namespace rather than try to join the zombie's (it has none)."""
    from ctrstore.rootless import userns

    def record(pid: int) -> None:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        (tmp_path / userns.PAUSE_PID).write_text(f"{pid} {start}\n")

    record(os.getpid())
    assert userns.pause_pid(tmp_path) == os.getpid()
    child = os.fork()
    if child == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.01)
        record(child)
        assert userns.pause_pid(tmp_path) is None
    finally:
        os.waitpid(child, 0)


def test_rootless_default_network_refuses_bridge_only_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default network of a rootless container is slirp4netns: ``--mac-address`` and
    ``--ip``, checked against ``bridge`` when parsed, are refused once the network is known
    (not silently dropped)."""
    from ctrstore.client.networks import spec_options
    from ctrstore.errdefs import InvalidArgument
    from ctrstore.network import NetworkOptions
    from ctrstore.oci import SpecOptions
    from ctrstore.rootless import slirp

    monkeypatch.setattr(rspec, "is_rootless", lambda: True)
    monkeypatch.setattr(slirp, "unavailable_reason", lambda: None)
    net, _ = spec_options(NetworkOptions.from_flags(), SpecOptions())
    assert net is not None and net.networks == ["slirp4netns"]
    with pytest.raises(InvalidArgument, match="--mac-address needs a bridge network"):
        spec_options(NetworkOptions.from_flags(mac_address="02:42:ac:11:00:99"), SpecOptions())
    with pytest.raises(InvalidArgument, match="--ip needs a bridge network"):
        spec_options(NetworkOptions.from_flags(ip="10.4.0.9"), SpecOptions())
