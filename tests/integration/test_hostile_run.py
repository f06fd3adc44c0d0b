"""``run`` and ``create`` from an image whose config has fields of the wrong type: one
``invalid argument`` line naming the config and the field, and no container, snapshot or
bundle left; ``ps`` never prints a container's command raw."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ctrstore import InvalidArgument
from ctrstore.content import Descriptor
from ctrstore.metadata.images import Image
from ctrstore.oci import SpecOptions
from tests.integration import test_cli_run
from tests.integration.crafted import Crafted, cli, crafted_image, one_line_error, sha, store_client
from tests.integration.test_cli_run import IMAGE, name

store = test_cli_run.store  # the fixture: a store holding busybox, cleaned up afterwards

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)"),
]

BAD = "localhost/bad-config:1"


def _store_crafted(where: Path, c: Crafted, image: str) -> None:
    """Put ``c`` in the store as it is (bypassing every check, as a store filled by an older
    version or by hand could be)."""
    client = store_client(where)
    try:
        for d, data in c.blobs.items():
            client.content.ingest(f"test-{d}", data, expected=d)
        t = c.target
        client.images.create(Image(image, Descriptor(t["mediaType"], t["digest"], t["size"])))
    finally:
        client.close()


CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "env-string": ({"config": {"Env": "PATH=/bin"}}, "config.Env must be an array, not a string"),
    "env-ints": ({"config": {"Env": [1]}}, "config.Env[0] must be a string"),
    "cmd-string": ({"config": {"Cmd": "sh"}}, "config.Cmd must be an array"),
    "entrypoint-object": ({"config": {"Entrypoint": {}}}, "config.Entrypoint must be an array"),
    "user-int": ({"config": {"User": 0}}, "config.User must be a string, not an integer"),
    "workdir-list": ({"config": {"WorkingDir": ["/"]}}, "config.WorkingDir must be a string"),
    "ports-list": ({"config": {"ExposedPorts": ["80/tcp"]}}, "config.ExposedPorts must be an object"),
    "volumes-string": ({"config": {"Volumes": "/data"}}, "config.Volumes must be an object"),
    "labels-int": ({"config": {"Labels": {"a": 1}}}, "config.Labels['a'] must be a string"),
    "config-list": ({"config": []}, "config must be an object, not an array"),
    "history-string": ({"history": "x"}, "history must be an array"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_run_with_a_config_of_wrong_types(store: Path, case: str) -> None:
    config, fragment = CONFIGS[case]
    c = crafted_image(config=config)
    _store_crafted(store, c, BAD)
    cfg_digest = next(d for d, data in c.blobs.items() if b'"rootfs"' in data)
    for args in (["run", "--rm", BAD, "true"], ["create", "--name", name("bad"), BAD, "true"]):
        one_line_error(cli(store, *args), "invalid argument", f"config {cfg_digest}", fragment)
    client = store_client(store)
    try:
        with pytest.raises(InvalidArgument, match=fragment.replace("[", r"\[")):
            client.containers.create(name("api"), BAD, SpecOptions(args=["true"]))
        assert client.containers.store.list() == []
        # Nothing was unpacked for the bad image.
        assert sha(c.layers[0]) not in {i.name for i in client.snapshotter().walk()}
    finally:
        client.close()
    tasks = store / "state" / "io.containerd.runtime.v2.task" / "default"
    assert not tasks.exists() or os.listdir(tasks) == []


def test_ps_escapes_the_command(store: Path) -> None:
    cid = name("esc")
    r = cli(store, "create", "--name", cid, IMAGE, "sh", "-c", "echo \x1b[2J\x07\u202e done")
    assert r.returncode == 0, r.stderr
    for flags in (["-a"], ["-a", "--no-trunc"]):
        r = cli(store, "ps", *flags)
        assert r.returncode == 0, r.stderr
        assert cid in r.stdout
        raw = [ch for line in r.stdout.splitlines() for ch in line if not ch.isprintable()]
        assert raw == [], r.stdout
        assert "\\x1b" in r.stdout or "\\u001b" in r.stdout, r.stdout
    assert cli(store, "rm", cid).returncode == 0
