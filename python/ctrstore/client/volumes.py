"""Volumes of a container being created, as docker makes them: ``-v NAME:/path`` (a named
volume, created on first use), ``-v /path`` and each of the image's ``Volumes`` not covered
by another mount (an anonymous volume, made for this container), each copied up from the
image's content at its path when it is empty (``ctrstore.volumes.copy``).

A volume mount reaches :class:`ContainerManager.create` as a :class:`ctrstore.oci.SpecMount`
of type ``volume`` whose source is the volume's name (``""`` for an anonymous one) and whose
options may hold ``nocopy``; it leaves as a bind mount of the volume's ``_data``, which is
what the OCI spec records (and what tells ``volume rm`` that the volume is in use).
"""

from __future__ import annotations

import json
import posixpath
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrstore.errdefs import InvalidArgument, NotFound, Unimplemented
from ctrstore.labels import ANONYMOUS_VOLUMES
from ctrstore.oci.spec import SpecMount, SpecOptions
from ctrstore.volumes.copy import copy_up, empty

if TYPE_CHECKING:
    from ctrstore.volumes import VolumeStore

__all__ = ["MAX_IMAGE_VOLUMES", "NOCOPY", "VOLUME", "ContainerVolumes", "anonymous_volumes", "image_volumes"]

VOLUME = "volume"
"""The SpecMount type of a volume mount (its source: the volume's name, "" for anonymous)."""
NOCOPY = "nocopy"
"""A volume mount option: do not copy the image's content into an empty volume."""
MAX_IMAGE_VOLUMES = 128
"""An image may ask for at most this many anonymous volumes (``config.Volumes``)."""


def image_volumes(image_config: Mapping[str, Any]) -> list[str]:
    """The image config's ``Volumes`` (``{"/path": {}}``): clean absolute paths, checked (the
    config is not trusted); at most :data:`MAX_IMAGE_VOLUMES`."""
    inner = image_config.get("config") if "config" in image_config else image_config
    vols = inner.get("Volumes") if isinstance(inner, Mapping) else None
    if vols is None:
        return []
    if not isinstance(vols, Mapping):
        raise InvalidArgument(f"image config: 'Volumes' must be an object, got {type(vols).__name__}")
    if len(vols) > MAX_IMAGE_VOLUMES:
        raise InvalidArgument(f"image config: {len(vols)} Volumes, more than the {MAX_IMAGE_VOLUMES} allowed")
    out = []
    for path in vols:
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise InvalidArgument(f"image config: Volumes entry {path!r} is not an absolute path")
        clean = "/" + posixpath.normpath(path).lstrip("/")
        if clean == "/":
            raise InvalidArgument("image config: a Volumes entry must not be '/'")
        if clean not in out:
            out.append(clean)
    return out


def anonymous_volumes(labels: Mapping[str, str]) -> list[str]:
    """The anonymous volumes a container record names (its ``nerdctl/anonymous-volumes``)."""
    text = labels.get(ANONYMOUS_VOLUMES)
    if not text:
        return []
    try:
        names = json.loads(text)
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


@dataclass
class ContainerVolumes:
    """The volumes of one container being created: :meth:`prepare` before its rootfs is
    mounted, :meth:`copy_up` once it is, :meth:`undo` if the creation fails."""

    store: VolumeStore | None
    """None: no volume plugin (disabled): volume mounts are refused, image Volumes ignored."""
    created: list[str] = field(default_factory=list)
    """Volumes made for this container (anonymous ones, and named ones used first now)."""
    anonymous: list[str] = field(default_factory=list)
    copies: list[tuple[str, Path]] = field(default_factory=list)
    """(container path, volume data dir) to copy up into."""
    filled: list[Path] = field(default_factory=list)
    """Data dirs this creation copied into (emptied again by undo)."""
    names: list[str] = field(default_factory=list)

    def prepare(self, opts: SpecOptions, image_config: Mapping[str, Any]) -> SpecOptions:
        """``opts`` with every volume mount made a bind mount of its volume's data (volumes
        created as needed), plus one anonymous volume per image ``Volumes`` path that no
        mount covers."""
        taken = {m.destination for m in opts.mounts}
        wanted: list[SpecMount] = list(opts.mounts)
        store = self.store
        if store is None:
            if any(m.type == VOLUME for m in wanted):
                raise Unimplemented(
                    "volume mounts need the volume plugin io.containerd.volume.v1.local, which is not "
                    "available (see: ctrstore plugin ls)"
                )
            return opts
        for path in image_volumes(image_config):
            if path not in taken:
                wanted.append(SpecMount(path, "", VOLUME, ("rbind", "rw", "rprivate")))
        if not any(m.type == VOLUME for m in wanted):
            return opts
        out: list[SpecMount] = []
        for m in wanted:
            if m.type != VOLUME:
                out.append(m)
                continue
            if m.source:
                vol, new = store.ensure(m.source)
                if new:
                    self.created.append(vol.name)
            else:
                vol = store.create(anonymous=True)
                self.created.append(vol.name)
                self.anonymous.append(vol.name)
            self.names.append(vol.name)
            if NOCOPY not in m.options:
                self.copies.append((m.destination, vol.mountpoint))
            options = tuple(o for o in m.options if o != NOCOPY) or ("rbind", "rw", "rprivate")
            out.append(SpecMount(m.destination, str(vol.mountpoint), "bind", options))
        return replace(opts, mounts=out)

    def labels(self) -> dict[str, str]:
        """The container's labels for its volumes (``nerdctl/anonymous-volumes``)."""
        return {ANONYMOUS_VOLUMES: json.dumps(self.anonymous)} if self.anonymous else {}

    def copy_up(self, rootfs: Path) -> None:
        """Copy the image's content at each volume's path into the volume, if it is empty."""
        for path, data in self.copies:
            if empty(data) and copy_up(rootfs, path, data):
                self.filled.append(data)

    def confirm(self) -> None:
        """After the container's record is committed: every volume still exists. (A ``volume
        rm`` that ran between the volume's creation and the record could not see the
        container; from the record on, it refuses.) NotFound if one went."""
        for name in self.names:
            assert self.store is not None
            try:
                self.store.get(name)
            except NotFound:
                raise NotFound(f"volume {name} was removed while the container was being created") from None

    def undo(self) -> None:
        """Remove the volumes made for this container and empty those it filled."""
        for data in self.filled:
            if data.parent.name not in self.created:
                _empty_dir(data)
        if self.created and self.store is not None:
            self.store.remove_many(self.created, if_unused=True)


def _empty_dir(path: Path) -> None:
    for p in path.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
