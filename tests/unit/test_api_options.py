"""``run``'s keyword options (``ctrstore.client.api.RunOptions``) as the
:class:`~ctrstore.oci.SpecOptions` they make, and what they refuse; docker's status words for
task states. (Running them: ``tests/integration/test_python_api.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrstore.cli._run_flags import parse_volume
from ctrstore.client.api import RunOptions, spec_options
from ctrstore.client.objects import container_status, env_list
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.oci import SpecMount, SpecOptions
from ctrstore.runtime.tasks import TaskStatus


def test_no_options_is_the_image_command() -> None:
    assert spec_options() == SpecOptions()
    assert spec_options(None) == SpecOptions()


def test_command_list_or_shell_words() -> None:
    assert spec_options(["echo", "a b"]).args == ["echo", "a b"]
    assert spec_options("sh -c 'echo $A; exit 2'").args == ["sh", "-c", "echo $A; exit 2"]
    with pytest.raises(InvalidArgument, match="no command"):
        spec_options([])
    with pytest.raises(InvalidArgument, match="no command"):
        spec_options("  ")


def test_every_option_maps_onto_its_field(tmp_path: Path) -> None:
    m = SpecMount("/m", str(tmp_path), "bind", ("rbind", "ro"))
    opts = spec_options(
        ["true"],
        environment={"A": "1", "B": "x=y"},
        volumes={str(tmp_path): {"bind": "/data/", "mode": "ro"}},
        mounts=[m],
        working_dir="/w",
        user="nobody:nogroup",
        hostname="box",
        tty=True,
        read_only=True,
        network_mode="host",
        privileged=True,
        cap_add=["NET_ADMIN"],
        cap_drop=["ALL"],
    )
    assert opts == SpecOptions(
        args=["true"],
        env=["A=1", "B=x=y"],
        cwd="/w",
        user="nobody:nogroup",
        hostname="box",
        tty=True,
        read_only=True,
        net="host",
        mounts=[SpecMount("/data", str(tmp_path), "bind", ("rbind", "ro", "rprivate")), m],
        privileged=True,
        cap_add=["NET_ADMIN"],
        cap_drop=["ALL"],
    )
    # every key of RunOptions is one the mapping reads
    assert set(RunOptions.__annotations__) == {
        "environment", "volumes", "mounts", "working_dir", "user", "hostname", "tty", "read_only",
        "network_mode", "privileged", "cap_add", "cap_drop",
    }  # fmt: skip


def test_volume_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    opts = spec_options(volumes=[f"{tmp_path}:/a:ro", "./rel:/b"])
    assert opts.mounts == [
        SpecMount("/a", str(tmp_path), "bind", ("rbind", "ro", "rprivate")),
        SpecMount("/b", str(tmp_path / "rel"), "bind", ("rbind", "rw", "rprivate")),
    ]


def test_named_and_anonymous_volumes_as_the_cli_takes_them() -> None:
    """A name is a named volume, a lone container path an anonymous one: the spec the CLI's
    ``-v`` makes (one parser, ``ctrstore.client.mounts``); ContainerManager.create makes them
    bind mounts of the volumes' data."""
    rw = ("rbind", "rw", "rprivate")
    assert spec_options(volumes={"pgdata": {"bind": "/data"}}).mounts == [
        SpecMount("/data", "pgdata", "volume", rw)
    ]
    assert spec_options(volumes={"pgdata": {"bind": "/data", "mode": "ro,nocopy"}}).mounts == [
        SpecMount("/data", "pgdata", "volume", ("rbind", "ro", "rprivate", "nocopy"))
    ]
    specs = ["pgdata:/var/lib/pg", "/scratch", "/cache:ro"]
    assert spec_options(volumes=specs).mounts == [
        SpecMount("/var/lib/pg", "pgdata", "volume", rw),
        SpecMount("/scratch", "", "volume", rw),
        SpecMount("/cache", "", "volume", ("rbind", "ro", "rprivate")),
    ]
    assert spec_options(volumes=specs).mounts == [parse_volume(v) for v in specs]


@pytest.mark.parametrize(
    ("volumes", "error", "match"),
    [
        (["/nonexistent-ctrstore-path:/a"], NotFound, "does not exist"),
        (["a:b:c:d"], InvalidArgument, "HOST_PATH:CONTAINER_PATH"),
        (["{tmp}:/a:ro:x"], InvalidArgument, "HOST_PATH:CONTAINER_PATH"),
        (["{tmp}:relative"], InvalidArgument, "must be an absolute path"),
        (["{tmp}:/a:rx"], InvalidArgument, "unknown option 'rx'"),
        (["pgdata:/"], InvalidArgument, "must not be '/'"),
        ({"": {"bind": "/a"}}, InvalidArgument, "no host path or volume name"),
        ({"{tmp}": {"mode": "ro"}}, InvalidArgument, "'bind'"),
        ({"{tmp}": "/a"}, InvalidArgument, "'bind'"),
        ("{tmp}:/a", InvalidArgument, "a mapping or a list"),
    ],
)
def test_bad_volumes(tmp_path: Path, volumes: object, error: type[Exception], match: str) -> None:
    def fill(v: object) -> object:
        if isinstance(v, str):
            return v.replace("{tmp}", str(tmp_path))
        if isinstance(v, list):
            return [fill(x) for x in v]
        assert isinstance(v, dict)
        return {fill(k): v for k, v in v.items()}

    with pytest.raises(error, match=match):
        spec_options(volumes=fill(volumes))  # type: ignore[arg-type]


def test_environment() -> None:
    assert env_list(None) == []
    assert env_list({"A": "1"}) == ["A=1"]
    assert env_list(["A=1", "B"]) == ["A=1", "B"]  # a bare name deletes it, as in SpecOptions
    for bad in ({"": "x"}, {"A=B": "x"}):
        with pytest.raises(InvalidArgument, match="variable name"):
            env_list(bad)
    with pytest.raises(InvalidArgument, match="mapping or a list"):
        env_list("A=1")


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'env'"):
        spec_options(["true"], env=["A=1"])  # type: ignore[call-arg]


def test_docker_status_words() -> None:
    words = {
        s: container_status(TaskStatus(s)) for s in ("created", "running", "paused", "stopped", "unknown")
    }
    assert words == {
        "created": "created",
        "running": "running",
        "paused": "paused",
        "stopped": "exited",
        "unknown": "created",
    }
    assert container_status(TaskStatus("exited")) == "exited"  # the runtime's own word, if it says so
