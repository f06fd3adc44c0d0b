"""The OCI runtime spec generator (``ctrstore.oci``: spec, user, caps). (What runc makes of the
specs: ``tests/integration/test_spec_runc.py``.)"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from ctrstore.cli._run_flags import parse_mount, parse_volume
from ctrstore.errdefs import InvalidArgument, NotFound
from ctrstore.oci import (
    DEFAULT_CAPS,
    DEFAULT_MASKED_PATHS,
    DEFAULT_PATH_ENV,
    DEFAULT_READONLY_PATHS,
    MAX_ID,
    SpecOptions,
    generate,
    merge_env,
    resolve_user,
    validate_container_id,
)

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
broken line
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:100::/home/bob:/bin/sh
huge:x:4294967295:1:::
"""

GROUP = """\
root:x:0:
wheel:x:10:root,alice
users:x:100:bob
alice:x:1000:alice
audio:x:29:alice,bob
staff:x:50:
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


@pytest.fixture
def empty_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "empty"
    root.mkdir()
    return root


def gen(
    rootfs: Path,
    config: dict[str, Any] | None = None,
    id: str = "0123456789abcdef",
    **opts: Any,
) -> dict[str, Any]:
    if config is None:
        config = {"config": {"Cmd": ["/bin/sh"]}}
    return generate(id, "default", config, SpecOptions(**opts), rootfs)


# -- env -------------------------------------------------------------------------------------


def test_merge_env_replaces_in_place_deletes_and_appends() -> None:
    base = ["PATH=/bin", "A=1", "B=2", "C=3"]
    assert merge_env(base, ["B=20", "A", "D=4", "PATH=/x"]) == ["PATH=/x", "B=20", "C=3", "D=4"]
    assert merge_env(base, []) == base
    assert merge_env(base, ["NOPE"]) == base
    assert merge_env([], ["X=1", "X=2", "Y=", "Y"]) == ["X=2"]
    assert merge_env(["A=1"], ["A", "A=3"]) == ["A=3"]
    assert merge_env(["A=x=y"], ["A=b=c"]) == ["A=b=c"]


def test_env_from_image_user_tty_and_hostname(rootfs: Path) -> None:
    cfg = {"config": {"Env": ["PATH=/img/bin", "LANG=C", "TERM=dumb"], "Cmd": ["sh"]}}
    spec = gen(rootfs, cfg, env=["LANG", "FOO=bar", "PATH=/mine"], tty=True)
    assert spec["process"]["env"] == ["PATH=/mine", "TERM=xterm", "FOO=bar", "HOSTNAME=0123456789ab"]
    assert spec["process"]["terminal"] is True


def test_env_default_path_when_image_has_none(rootfs: Path) -> None:
    spec = gen(rootfs, {"config": {"Cmd": ["sh"], "Env": None}})
    assert spec["process"]["env"] == [DEFAULT_PATH_ENV, "HOSTNAME=0123456789ab"]
    assert spec["process"]["terminal"] is False
    spec = gen(rootfs, {"config": {"Cmd": ["sh"]}}, tty=True, hostname="box")
    assert spec["process"]["env"] == [DEFAULT_PATH_ENV, "TERM=xterm", "HOSTNAME=box"]
    assert spec["hostname"] == "box"


def test_hostname_defaults(rootfs: Path) -> None:
    assert gen(rootfs, id="short")["hostname"] == "short"
    assert gen(rootfs)["hostname"] == "0123456789ab"
    assert gen(rootfs, net="host")["hostname"] == socket.gethostname()


# -- args and cwd ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "user_args", "expected"),
    [
        (None, ["sh", "-c", "x"], [], ["sh", "-c", "x"]),
        (None, ["sh"], ["echo", "hi"], ["echo", "hi"]),
        (["/entry", "-v"], ["default"], [], ["/entry", "-v", "default"]),
        (["/entry"], ["default"], ["mine", "2"], ["/entry", "mine", "2"]),
        (["/entry"], None, [], ["/entry"]),
        (None, None, ["only"], ["only"]),
    ],
)
def test_args(
    rootfs: Path,
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    user_args: list[str],
    expected: list[str],
) -> None:
    cfg = {"config": {"Entrypoint": entrypoint, "Cmd": cmd}}
    assert gen(rootfs, cfg, args=user_args)["process"]["args"] == expected


def test_no_command(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        gen(rootfs, {"config": {}})
    with pytest.raises(InvalidArgument, match="no command specified"):
        gen(rootfs, {"architecture": "amd64", "os": "linux"})


def test_inner_config_object_accepted(rootfs: Path) -> None:
    spec = gen(rootfs, {"Cmd": ["x"], "WorkingDir": "/w"})
    assert spec["process"]["args"] == ["x"]
    assert spec["process"]["cwd"] == "/w"


def test_bad_image_config_types(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="'Cmd' must be a list of strings"):
        gen(rootfs, {"config": {"Cmd": "sh"}})
    with pytest.raises(InvalidArgument, match="'User' must be a string"):
        gen(rootfs, {"config": {"Cmd": ["sh"], "User": 0}})


def test_cwd(rootfs: Path) -> None:
    assert gen(rootfs)["process"]["cwd"] == "/"
    cfg = {"config": {"Cmd": ["sh"], "WorkingDir": "/app"}}
    assert gen(rootfs, cfg)["process"]["cwd"] == "/app"
    assert gen(rootfs, cfg, cwd="/other")["process"]["cwd"] == "/other"
    with pytest.raises(InvalidArgument, match="absolute"):
        gen(rootfs, cfg, cwd="rel")


# -- users -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "uid", "gid", "gids"),
    [
        ("", 0, 0, (0, 10)),
        ("0", 0, 0, (0, 10)),
        ("root", 0, 0, (0, 10)),
        ("alice", 1000, 1000, (1000, 10, 29)),  # not her own group "alice" twice
        ("1000", 1000, 1000, (1000, 10, 29)),
        ("bob", 1001, 100, (100, 29)),
        ("4242", 4242, 0, (0,)),  # absent from passwd: gid 0
        ("1000:50", 1000, 50, (50,)),
        ("alice:staff", 1000, 50, (50,)),
        ("alice:7", 1000, 7, (7,)),
        ("1001:audio", 1001, 29, (29,)),
        ("4242:4243", 4242, 4243, (4243,)),
        (f"{MAX_ID}", MAX_ID, 0, (0,)),
    ],
)
def test_resolve_user(rootfs: Path, user: str, uid: int, gid: int, gids: tuple[int, ...]) -> None:
    r = resolve_user(rootfs, user)
    assert (r.uid, r.gid, r.additional_gids) == (uid, gid, gids)


def test_user_in_spec_from_image_and_override(rootfs: Path) -> None:
    cfg = {"config": {"Cmd": ["sh"], "User": "bob"}}
    assert gen(rootfs, cfg)["process"]["user"] == {"uid": 1001, "gid": 100, "additionalGids": [100, 29]}
    spec = gen(rootfs, cfg, user="alice:staff")
    assert spec["process"]["user"] == {"uid": 1000, "gid": 50, "additionalGids": [50]}


def test_unknown_names(rootfs: Path, empty_rootfs: Path) -> None:
    with pytest.raises(NotFound, match="user 'carol' not found in the image's /etc/passwd"):
        resolve_user(rootfs, "carol")
    with pytest.raises(NotFound, match="group 'nogroup' not found"):
        resolve_user(rootfs, "alice:nogroup")
    with pytest.raises(NotFound, match="no /etc/passwd"):
        resolve_user(empty_rootfs, "alice")
    with pytest.raises(NotFound, match="no /etc/group"):
        resolve_user(empty_rootfs, "0:wheel")
    with pytest.raises(NotFound, match="user 'carol'"):
        gen(rootfs, user="carol")


def test_numeric_ids_without_files(empty_rootfs: Path) -> None:
    r = resolve_user(empty_rootfs, "123")
    assert (r.uid, r.gid, r.additional_gids) == (123, 0, (0,))
    r = resolve_user(empty_rootfs, "")
    assert (r.uid, r.gid, r.additional_gids) == (0, 0, (0,))
    # Fully numeric: the rootfs is not even looked at.
    r = resolve_user(empty_rootfs / "missing", "5:6")
    assert (r.uid, r.gid, r.additional_gids) == (5, 6, (6,))


@pytest.mark.parametrize("user", [f"{MAX_ID + 1}", "4294967295", "-1", f"0:{MAX_ID + 1}", "alice:-5"])
def test_ids_out_of_range(rootfs: Path, user: str) -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        resolve_user(rootfs, user)


@pytest.mark.parametrize("user", ["a:b:c", ":1", "1:", ":"])
def test_malformed_users(rootfs: Path, user: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid user"):
        resolve_user(rootfs, user)


def test_passwd_entry_with_huge_uid_is_ignored(rootfs: Path) -> None:
    with pytest.raises(NotFound):
        resolve_user(rootfs, "huge")


def test_symlinked_passwd_outside_rootfs_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\nalice:x:7:7::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(outside)  # absolute: resolved inside the rootfs
    with pytest.raises(NotFound, match="no /etc/passwd"):
        resolve_user(root, "evil")
    assert resolve_user(root, "7").gid == 0  # the host file's alice (gid 7) is not seen

    rel = os.path.relpath(outside, root / "etc")  # ../../host-passwd: ".." stops at the root
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(rel)
    with pytest.raises(NotFound, match="no /etc/passwd"):
        resolve_user(root, "evil")

    # /etc itself a symlink to the host's /etc: resolved to <rootfs>/etc, which is absent.
    shutil.rmtree(root / "etc")
    (root / "etc").symlink_to(tmp_path)
    (tmp_path / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    with pytest.raises(NotFound, match="no /etc/passwd"):
        resolve_user(root, "evil")


def test_symlinks_inside_rootfs_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "passwd").write_text("svc:x:500:600::/:/bin/sh\n")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").symlink_to("/usr/lib/passwd")
    r = resolve_user(root, "svc")
    assert (r.uid, r.gid) == (500, 600)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../usr/./lib/passwd")
    assert resolve_user(root, "svc").uid == 500


def test_symlink_loop_and_non_regular_passwd(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("passwd")
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        resolve_user(root, "x")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").mkdir()
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(root, "x")
    os.rmdir(root / "etc" / "passwd")
    os.mkfifo(root / "etc" / "passwd")  # must not block
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(root, "x")


# -- defaults --------------------------------------------------------------------------------


def test_defaults(rootfs: Path) -> None:
    spec = gen(rootfs)
    assert spec["ociVersion"] in ("1.1.0", "1.2.0")
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    p = spec["process"]
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}
    assert p["noNewPrivileges"] is True
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    for kind in ("bounding", "effective", "permitted"):
        assert p["capabilities"][kind] == list(DEFAULT_CAPS)
    assert "inheritable" not in p["capabilities"]
    linux = spec["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert linux["cgroupsPath"] == "/default/0123456789abcdef"
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "seccomp" not in linux
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert list(mounts) == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/run",
        "/sys/fs/cgroup",
    ]
    assert mounts["/proc"] == {
        "destination": "/proc",
        "type": "proc",
        "source": "proc",
        "options": ["nosuid", "noexec", "nodev"],
    }
    assert mounts["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert mounts["/dev/pts"]["options"] == [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ]
    assert (mounts["/dev/shm"]["source"], mounts["/dev/shm"]["type"]) == ("shm", "tmpfs")
    assert mounts["/sys"]["options"] == ["nosuid", "noexec", "nodev", "ro"]
    assert mounts["/run"]["type"] == "tmpfs"
    for dest in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert dest not in mounts
    json.dumps(spec)  # serialisable as is


def test_net_modes(rootfs: Path) -> None:
    ns = [n["type"] for n in gen(rootfs, net="host")["linux"]["namespaces"]]
    assert ns == ["pid", "ipc", "uts", "mount"]
    for mode in ("none", "private"):
        assert {"type": "network"} in gen(rootfs, net=mode)["linux"]["namespaces"]
    with pytest.raises(InvalidArgument, match="network mode 'bridge'"):
        gen(rootfs, net="bridge")


def test_read_only_root_and_cgroups_path(rootfs: Path) -> None:
    spec = gen(rootfs, read_only=True, cgroups_path="/custom/x")
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["linux"]["cgroupsPath"] == "/custom/x"


def test_container_id_rules(rootfs: Path) -> None:
    assert validate_container_id("a.b_c-1") == "a.b_c-1"
    for bad in ("", "-a", "a..b", "a/b", "x" * 77, "a b"):
        with pytest.raises(InvalidArgument):
            validate_container_id(bad)
    with pytest.raises(InvalidArgument):
        gen(rootfs, id="bad/id")


def test_capabilities(rootfs: Path) -> None:
    caps = gen(rootfs, cap_add=["sys_admin", "CAP_NET_ADMIN", "chown"], cap_drop=["net_raw"])
    bounding = caps["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" in bounding and "CAP_NET_ADMIN" in bounding
    assert "CAP_NET_RAW" not in bounding
    assert bounding.count("CAP_CHOWN") == 1
    spec = gen(rootfs, cap_drop=["ALL"], cap_add=["kill"])
    assert spec["process"]["capabilities"]["effective"] == ["CAP_KILL"]
    with pytest.raises(InvalidArgument, match="unknown capability"):
        gen(rootfs, cap_add=["CAP_FLY"])


def test_privileged(rootfs: Path) -> None:
    spec = gen(rootfs, privileged=True)
    linux = spec["linux"]
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in linux["devices"])
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "ro" not in mounts["/sys"]["options"]
    assert spec["process"]["noNewPrivileges"] is False
    if os.geteuid() == 0:
        assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]


# -- user mounts -----------------------------------------------------------------------------


def test_user_mounts_in_spec(rootfs: Path, tmp_path: Path) -> None:
    a = parse_volume(f"{tmp_path}:/data:ro")
    b = parse_volume(f"{tmp_path}:/run")  # replaces the default /run tmpfs
    spec = gen(rootfs, mounts=[a, b])
    mounts = [m for m in spec["mounts"] if m["destination"] in ("/data", "/run")]
    assert mounts == [a.to_json(), b.to_json()]
    assert "rootfsPropagation" not in spec["linux"]
    shared = parse_mount(f"type=bind,src={tmp_path},dst=/s,bind-propagation=rshared")
    assert gen(rootfs, mounts=[shared])["linux"]["rootfsPropagation"] == "shared"
    with pytest.raises(InvalidArgument, match="duplicate mount point /data"):
        gen(rootfs, mounts=[a, a])
