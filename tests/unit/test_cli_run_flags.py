"""The command line's ``-v`` and ``--mount`` grammar (``ctrstore.cli._run_flags``), as nerdctl
parses it, into :class:`ctrstore.oci.SpecMount` values."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrstore.cli._run_flags import parse_mount, parse_volume
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.oci import SpecMount


def test_parse_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    m = parse_volume(f"{tmp_path}/data:/data")
    assert m == SpecMount("/data", f"{tmp_path}/data", "bind", ("rbind", "rw", "rprivate"))
    assert m.to_json() == {
        "destination": "/data",
        "type": "bind",
        "source": f"{tmp_path}/data",
        "options": ["rbind", "rw", "rprivate"],
    }
    assert m.to_mount().options == ("rbind", "rw", "rprivate")
    m = parse_volume(f"{tmp_path}/data:/x/../data/:ro")
    assert (m.destination, m.options, m.readonly) == ("/data", ("rbind", "ro", "rprivate"), True)
    assert parse_volume(f"{tmp_path}/data:/d:rslave,ro").options == ("rbind", "ro", "rslave")
    monkeypatch.chdir(tmp_path)
    assert parse_volume("./data:/d").source == f"{tmp_path}/data"
    assert parse_volume("data/../data:/d").source == f"{tmp_path}/data"


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("/nonexistent-dir-xyz:/d", NotFound, "/nonexistent-dir-xyz does not exist"),
        ("{d}:relative", InvalidArgument, "must be an absolute path"),
        ("{d}:/", InvalidArgument, "must not be '/'"),
        ("{d}:/d:rw,ro", InvalidArgument, "duplicated read/write"),
        ("{d}:/d:z", InvalidArgument, "unknown option 'z'"),
        ("{d}:/d:ro:x", InvalidArgument, "expected HOST_PATH"),
        ("{d}:/d:nocopy", InvalidArgument, "unknown option 'nocopy'"),
        ("bad name:/d", NotFound, "does not exist"),
    ],
)
def test_parse_volume_errors(tmp_path: Path, spec: str, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        parse_volume(spec.format(d=tmp_path))


def test_parse_volume_named_and_anonymous() -> None:
    """docker's reading: a source that is a volume name is a named volume; one path alone (or
    with options only) an anonymous volume; both reach the manager as type "volume"."""
    rw = ("rbind", "rw", "rprivate")
    assert parse_volume("myvol:/d") == SpecMount("/d", "myvol", "volume", rw)
    assert parse_volume("my.vol_2:/d:ro,nocopy") == SpecMount(
        "/d", "my.vol_2", "volume", ("rbind", "ro", "rprivate", "nocopy")
    )
    assert parse_volume("/only-one") == SpecMount("/only-one", "", "volume", rw)
    assert parse_volume("/data:ro") == SpecMount("/data", "", "volume", ("rbind", "ro", "rprivate"))
    assert parse_mount("type=volume,src=v1,dst=/d,volume-nocopy") == SpecMount(
        "/d", "v1", "volume", (*rw, "nocopy")
    )
    assert parse_mount("type=volume,dst=/d,ro") == SpecMount("/d", "", "volume", ("rbind", "ro", "rprivate"))


def test_parse_mount(tmp_path: Path) -> None:
    m = parse_mount(f"type=bind,source={tmp_path},target=/t,readonly")
    assert m == SpecMount("/t", str(tmp_path), "bind", ("rbind", "ro", "rprivate"))
    m = parse_mount(f"type=bind,src={tmp_path},dst=/t,ro=false,bind-propagation=rshared")
    assert m.options == ("rbind", "rw", "rshared")
    m = parse_mount(f"type=bind,src={tmp_path},destination=/t,bind-nonrecursive")
    assert m.options == ("bind", "rw", "rprivate")


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("type=volume,src=-v,dst=/d", InvalidArgument, "not a valid volume name"),
        ("type=bind,src={d},dst=/d,volume-nocopy", InvalidArgument, "volume-nocopy is for type=volume"),
        ("type=tmpfs,dst=/d", InvalidArgument, "only type=bind"),
        ("src={d},dst=/d", InvalidArgument, "type=bind is required"),
        ("type=bind,src={d},dst=/d,color=red", InvalidArgument, "unknown key 'color'"),
        ("type=bind,src={d},dst=/d,bogus", InvalidArgument, "key=value"),
        ("type=bind,src={d},dst=/d,readonly=maybe", InvalidArgument, "invalid value for readonly"),
        ("type=bind,src={d},dst=/d,bind-propagation=up", InvalidArgument, "invalid bind-propagation"),
        ("type=bind,src={d}", InvalidArgument, "no target"),
        ("type=bind,dst=/d", InvalidArgument, "no source"),
        ("type=bind,src=/nonexistent-xyz,dst=/d", NotFound, "/nonexistent-xyz does not exist"),
    ],
)
def test_parse_mount_errors(tmp_path: Path, spec: str, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        parse_mount(spec.format(d=tmp_path))
