"""Small images made on this machine, for the demo, the tests and the benchmarks (nothing is
pulled from the internet): a busybox image built from Debian's static busybox."""

from __future__ import annotations

import shutil
from pathlib import Path

from ctrstore.content import Store
from ctrstore.errdefs import FailedPrecondition
from ctrstore.images.build import Compression, Entry, ImageSpec, build_image, tar_from_entries
from ctrstore.metadata.images import Image, ImageStore

__all__ = ["BUSYBOX_APPLETS", "busybox_image", "find_busybox"]

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
    name: str = "localhost/busybox:latest",
    *,
    compression: Compression = "gzip",
    cmd: tuple[str, ...] = ("sh",),
) -> Image:
    """A three-layer image: busybox and its applets; /etc with users; a data layer."""
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
    return build_image(content, images, name, layers, ImageSpec(cmd=cmd), compression=compression)
