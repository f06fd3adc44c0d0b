"""Small images made on this machine with ctrstore's own builder, for the tests, the benchmarks
and the demo (nothing is pulled from the internet):

- ``busybox_image``: a three-layer busybox image built from Debian's static busybox;
- ``BASE``, ``UPPER``, ``TOP``: the entries of the three layers of a small image that has every
  kind of tar entry and both kinds of whiteout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ctrstore.content import Store
from ctrstore.errdefs import FailedPrecondition
from ctrstore.images.build import Compression, Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.metadata.images import Image, ImageStore

__all__ = [
    "BASE",
    "BUSYBOX",
    "BUSYBOX_APPLETS",
    "TOP",
    "UPPER",
    "busybox_image",
    "find_busybox",
]

BUSYBOX = "localhost/busybox:latest"
"""The name ``busybox_image`` gives its image unless told otherwise."""

BUSYBOX_APPLETS = (
    "sh",
    "ash",
    "cat",
    "echo",
    "ls",
    "sleep",
    "id",
    "mkdir",
    "rm",
    "touch",
    "env",
    "true",
    "false",
    "hostname",
    "ps",
    "kill",
    "wc",
    "grep",
    "sed",
    "head",
    "tail",
    "mount",
    "uname",
    "date",
    "whoami",
    "printf",
    "test",
    "[",
    "cp",
    "mv",
    "ln",
    "chmod",
    "stat",
    "find",
    "xargs",
    "tr",
    "sort",
    "top",
    "tty",
    "pwd",
    "readlink",
    "dirname",
    "basename",
    "seq",
    "tee",
)


def find_busybox() -> Path:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).is_file():
            return Path(p)
    found = shutil.which("busybox")
    if found:
        return Path(found)
    raise FailedPrecondition("busybox is not installed (apt-get install busybox-static)")


def busybox_image(
    content: Store,
    images: ImageStore | None,
    name: str = BUSYBOX,
    *,
    compression: Compression = "gzip",
    cmd: tuple[str, ...] = ("sh",),
    exposed_ports: tuple[str, ...] = (),
) -> Image:
    """A three-layer image: busybox and its applets; /etc with users; a data layer
    (``exposed_ports``: its config's ExposedPorts, ``"80/tcp"``)."""
    bb = find_busybox().read_bytes()
    base = [
        Entry("bin", "dir"),
        Entry("bin/busybox", data=bb, mode=0o755),
        *(Entry(f"bin/{a}", "symlink", link="busybox") for a in BUSYBOX_APPLETS),
        Entry("tmp", "dir", mode=0o1777),
        Entry("root", "dir", mode=0o700),
        Entry("proc", "dir"),
        Entry("sys", "dir"),
        Entry("dev", "dir"),
        Entry("run", "dir"),
    ]
    etc = [
        Entry("etc", "dir"),
        Entry(
            "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        ),
        Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"),
        Entry("etc/hostname", data=b"busybox\n"),
    ]
    data = [Entry("data", "dir"), Entry("data/hello.txt", data=b"hello from a ctrstore image\n")]
    layers = [tar_from_entries(base), tar_from_entries(etc), tar_from_entries(data)]
    return build_image(
        content,
        images,
        name,
        layers,
        ImageSpec(cmd=cmd, exposed_ports=exposed_ports),
        compression=compression,
    )


# -- a small image with every kind of entry ----------------------------------------------------
BASE = [
    Entry("etc", "dir"),
    Entry("etc/hostname", data=b"base\n"),
    Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
    Entry("bin", "dir"),
    Entry("bin/tool", data=b"#!/bin/sh\necho tool\n", mode=0o755),
    Entry("bin/alias", "symlink", link="tool"),
    Entry("bin/tool2", "hardlink", link="bin/tool"),
    Entry("var/lib/data", data=b"lower data", uid=1000, gid=1000),
    Entry("opaque", "dir"),
    Entry("opaque/old", data=b"hidden by the upper layer"),
    Entry("gone", data=b"deleted above"),
    Entry("dev", "dir"),
    Entry("dev/null0", "char", major=1, minor=3),
]
"""The bottom layer: files, a symlink, a hard link, owners, a device node."""
UPPER = [
    Entry("etc/hostname", data=b"upper\n"),
    Entry("gone", "whiteout"),
    Entry("opaque", "opaque"),
    Entry("opaque/new", data=b"only this"),
    Entry("xattr", data=b"x", xattrs={"user.demo": "yes"}),
]
"""The middle layer: a changed file, a whiteout, an opaque directory, an xattr."""
TOP = [Entry("root", "dir", mode=0o700), Entry("root/.profile", data=b"# top\n")]
"""The top layer: a private directory."""
