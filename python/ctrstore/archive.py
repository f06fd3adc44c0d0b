"""Layers, both ways. Application: a layer tar (gzip, zstd or plain, told apart by magic bytes)
applied onto a directory, with whiteouts, and its diffID (sha256 of the whole uncompressed
stream) computed in the same pass. Writing (``write_diff``): a snapshot's changes as a layer,
compressed and hashed in one streaming pass. The work is the Rust core's
(``ctrstore-core::archive``, also the one owner of the whiteout encoding) and runs without the
GIL.

``whiteouts="overlay"`` writes overlayfs whiteouts (a 0:0 character device, the
``trusted.overlay.opaque`` xattr) into an overlay upper dir; ``"delete"`` removes what the
whiteouts name from a full tree (native and btrfs snapshots). A layer can never write outside
``target``: every path is resolved inside it, and entries that try are refused by name.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from typing import BinaryIO, Literal

from ctrstore import _core
from ctrstore._core import ApplyStats, DiffStats, whiteout_path

__all__ = ["ApplyStats", "DiffStats", "apply_layer", "whiteout_path", "write_diff"]

Whiteouts = Literal["overlay", "delete"]
Compression = Literal["gzip", "zstd", "none"]


def write_diff(
    out: _core.IngestWriter | int,
    upper: str | os.PathLike[str],
    *,
    lower: str | os.PathLike[str] | None = None,
    compression: Compression = "gzip",
    owner_xattr: bool | None = None,
) -> DiffStats:
    """Write the layer of a snapshot's changes into ``out`` (an ingest writer, or a file
    descriptor, left open), as containerd's diff writer does.

    Without ``lower``, ``upper`` is an overlay upper directory: its entries are the changes,
    0:0 character devices deleted names and ``trusted.overlay.opaque=y`` directories opaque.
    With ``lower``, tree ``upper`` is compared with tree ``lower`` (what is gone becomes a
    whiteout, what is the same is left out). Memory use is bounded whatever the layer's size.
    ``owner_xattr`` (by default: in a single-id user namespace) takes each entry's owner from
    its ``user.rootlesscontainers`` xattr, which is left out of the layer (as umoci does).
    """
    if owner_xattr is None:
        from ctrstore.rootless import single_id

        owner_xattr = single_id()
    return _core.write_diff(out, upper, lower, compression, owner_xattr)


def apply_layer(
    target: str | os.PathLike[str],
    layer: str | os.PathLike[str] | BinaryIO | _core.IngestWatch | _core.LayerDecoder,
    *,
    whiteouts: Whiteouts = "overlay",
    parents: Sequence[str | os.PathLike[str]] = (),
    no_same_owner: bool = False,
    userxattr: bool | None = None,
    owner_xattr: bool | None = None,
) -> ApplyStats:
    """Apply ``layer`` (a path, a binary file object, an ingest being written: see
    ``ctrstore.stream``, or a layer file decoded ahead) onto the directory ``target``.

    ``parents`` are the overlay lower dirs, nearest first: directories a layer creates
    implicitly take their owner, mode and times from there. ``userxattr`` marks opaque
    directories with ``user.overlay.opaque`` instead of ``trusted.overlay.opaque``; by default
    it does so in a user namespace (rootless), where overlay is mounted with ``userxattr`` and
    trusted.* cannot be set. Device nodes are skipped there (a user namespace cannot make
    them; as containerd and podman). ``owner_xattr`` (by default: in a single-id user
    namespace, which cannot chown) chowns nothing and records each entry's owner, where it is
    not 0:0, in the ``user.rootlesscontainers`` xattr, as umoci's rootless unpack does.
    """
    from ctrstore.rootless import in_userns, single_id

    if userxattr is None:
        userxattr = in_userns()
    if owner_xattr is None:
        owner_xattr = single_id()
    opts = (whiteouts, [os.fspath(p) for p in parents], no_same_owner, userxattr, owner_xattr)
    if isinstance(layer, _core.IngestWatch):
        return _core.apply_layer_watch(target, layer, *opts)
    if isinstance(layer, _core.LayerDecoder):
        return layer.apply(target, *opts)
    if isinstance(layer, str | os.PathLike):
        return _core.apply_layer_path(target, layer, *opts)
    if isinstance(layer, io.FileIO):
        return _core.apply_layer_fd(target, layer.fileno(), *opts)
    return _apply_through_pipe(target, layer, opts)


def _apply_through_pipe(
    target: str | os.PathLike[str], layer: BinaryIO, opts: tuple[str, list[str], bool, bool, bool]
) -> ApplyStats:
    """Feed a Python file object to the Rust applier through a pipe, from a thread."""
    r, w = os.pipe()
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            with open(w, "wb", buffering=0) as out:
                while chunk := layer.read(1 << 20):
                    out.write(chunk)
        except BrokenPipeError:
            pass  # the applier stopped reading (it failed); its error is the one to report
        except BaseException as e:
            failure.append(e)

    t = threading.Thread(target=feed, name="ctrstore-layer-feed", daemon=True)
    t.start()
    try:
        stats = _core.apply_layer_fd(target, r, *opts)
    finally:
        os.close(r)
        t.join()
    if failure:
        raise failure[0]
    return stats
