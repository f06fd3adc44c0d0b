"""``ctrstore.archive`` from Python: the Rust diff writer into a file descriptor and into a
content-store ingest, its round trip through ``apply_layer``, and the pyclasses that cross the
boundary (``DiffStats``, ``ApplyStats``). (The writer's format, case by case, is tested in Rust:
``rust/ctrstore-core/src/archive/diff_tests.rs``.)"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ctrstore import Client, _core
from ctrstore.archive import ApplyStats, Compression, DiffStats, apply_layer, whiteout_path, write_diff
from ctrstore.errdefs import InvalidArgument, NotFound

pytestmark = pytest.mark.root


def upper_dir(root: Path) -> Path:
    """An overlay upper dir as overlayfs leaves it: new files, a hard link, a symlink, a
    whiteout device for a deleted name, an opaque directory."""
    up = root / "upper"
    (up / "etc").mkdir(parents=True)
    (up / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    os.link(up / "etc" / "hosts", up / "etc" / "hosts.bak")
    (up / "link").symlink_to("etc/hosts")
    os.mknod(up / "etc" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (up / "opq").mkdir()
    (up / "opq" / "only").write_bytes(b"x" * 100_000)
    os.setxattr(up / "opq", "trusted.overlay.opaque", b"y")
    return up


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_write_diff_to_a_descriptor_round_trips(tmp_path: Path, compression: Compression) -> None:
    up = upper_dir(tmp_path)
    layer = tmp_path / "layer"
    with open(layer, "wb") as f:
        stats = write_diff(f.fileno(), up, compression=compression)
    assert isinstance(stats, DiffStats)
    blob = layer.read_bytes()
    assert stats.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (stats.size, stats.compression) == (len(blob), compression)
    if compression != "zstd":  # (Python 3.11's tarfile reads no zstd)
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tf:
            names = tf.getnames()
            assert tf.getmember("etc/hosts.bak").islnk()
        assert whiteout_path("etc/gone") in names
        assert names[names.index("opq") + 1] == whiteout_path("opq", opaque=True)
        assert stats.entries == len(names)

    # Applied into an empty overlay upper dir, it gives back what it was written from.
    target = tmp_path / "target"
    target.mkdir()
    applied = apply_layer(target, layer)
    assert isinstance(applied, ApplyStats)
    assert (applied.diff_id, applied.uncompressed_bytes) == (stats.diff_id, stats.uncompressed_bytes)
    assert applied.compression == compression
    assert (target / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert (target / "etc" / "hosts").stat().st_ino == (target / "etc" / "hosts.bak").stat().st_ino
    assert os.readlink(target / "link") == "etc/hosts"
    gone = os.lstat(target / "etc" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(target / "opq", "trusted.overlay.opaque") == b"y"


def test_write_diff_compares_trees(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower, upper):
        (d / "keep").mkdir(parents=True)
        (d / "keep" / "same").write_text("same")
        os.utime(d / "keep" / "same", (1_600_000_000, 1_600_000_000))
        (d / "old").write_text("old")
    (upper / "old").unlink()
    (upper / "keep" / "new").write_text("new")
    with open(tmp_path / "layer", "wb") as f:
        stats = write_diff(f.fileno(), upper, lower=lower, compression="none")
    with tarfile.open(tmp_path / "layer") as tf:
        # Name order, containerd's: the whiteout goes where "old" was.
        assert tf.getnames() == ["keep", "keep/new", ".wh.old"]
    assert stats.entries == 3


def test_write_diff_into_an_ingest(client: Client, tmp_path: Path) -> None:
    """Into a content-store ingest (from its start, even when the ingest had bytes), then
    committed under the digest the writer computed."""
    up = upper_dir(tmp_path)
    with client.content.writer("diff-1") as w:
        w.write(b"left over from an earlier try")
        stats = w.write_diff(up)
        digest = w.commit(stats.size, stats.digest, {"containerd.io/uncompressed": stats.diff_id})
    assert digest == stats.digest
    info = client.content.info(digest)
    assert info.size == stats.size
    assert info.labels["containerd.io/uncompressed"] == stats.diff_id
    target = tmp_path / "t"
    target.mkdir()
    assert apply_layer(target, client.content.path(digest)).diff_id == stats.diff_id


def test_write_diff_errors(tmp_path: Path) -> None:
    up = upper_dir(tmp_path)
    with pytest.raises(InvalidArgument, match="compression must be"):
        _core.write_diff(1, up, None, "lz4")
    with pytest.raises(InvalidArgument, match="IngestWriter or a file descriptor"):
        _core.write_diff("nope", up)  # type: ignore[arg-type]
    with open(tmp_path / "layer", "wb") as f, pytest.raises(NotFound, match="missing"):
        write_diff(f.fileno(), tmp_path / "missing")


def test_structured_results_are_pyclasses() -> None:
    assert ApplyStats is _core.ApplyStats and DiffStats is _core.DiffStats
    for cls in (ApplyStats, DiffStats, _core.IngestStatus, _core.IngestEntry, _core.BlobInfo):
        assert cls.__module__ == "ctrstore._core"
