"""Image records: a name pointing at a target descriptor (an index or a manifest), with labels.

An image is a gc root: its target, and everything the target's labels reference, is kept.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from ctrstore import _core, filters
from ctrstore import labels as labelutil
from ctrstore._timeutil import parse_rfc3339
from ctrstore.content import Descriptor
from ctrstore.errdefs import AlreadyExists, InvalidArgument, NotFound
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp
from ctrstore.metadata.leases import add_resource

__all__ = ["NAME_MAX", "Image", "ImageStore", "validate_name"]

NAME_MAX = 512
"""The longest image name: a 255-character repository, a 128-character tag and a digest."""


@dataclass(frozen=True)
class Image:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


_COLUMNS = (
    "name, target_media_type, target_digest, target_size, target_annotations, labels, created_at, updated_at"
)


def _image(row: tuple[str, str, str, int, str, str, str, str]) -> Image:
    name, mt, dg, size, ann, lb, created, updated = row
    return Image(
        name,
        Descriptor(mt, dg, size, annotations=json.loads(ann)),
        loads_labels(lb),
        parse_rfc3339(created),
        parse_rfc3339(updated),
    )


def validate_name(name: str) -> str:
    """``name`` if it is a valid image reference (as ``ctr images tag`` requires): no control
    characters, white space or ``..`` path elements, a repository name of at most 255
    characters, a tag of at most 128; else InvalidArgument. The name is kept as given (not
    normalised): ``app:1`` stays ``app:1``."""
    from ctrstore.remotes.reference import parse

    if not name:
        raise InvalidArgument("image name must not be empty")
    if len(name) > NAME_MAX:
        raise InvalidArgument(f"image name of {len(name)} characters: at most {NAME_MAX} are allowed")
    try:
        parse(name, default_tag=False)
    except InvalidArgument as e:
        raise InvalidArgument(f"image name is not a valid reference: {e}") from None
    return name


def _validate(image: Image) -> None:
    validate_name(image.name)
    _validate_target(image)


def _validate_target(image: Image) -> None:
    if not image.target.media_type:
        raise InvalidArgument(f"image {image.name!r}: target media type must be set")
    _core.parse_digest(image.target.digest)


class ImageStore:
    def __init__(self, db: DB, namespace: str, *, lease: str | None = None) -> None:
        self.db = db
        self.namespace = namespace
        self.lease = lease

    def _get(self, cur: sqlite3.Cursor, name: str) -> Image | None:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM images WHERE namespace=? AND name=?", (self.namespace, name)
        ).fetchone()
        return None if row is None else _image(row)

    def get(self, name: str) -> Image:
        with self.db.read() as cur:
            img = self._get(cur, name)
            if img is None:
                DB.require_namespace(cur, self.namespace)
                raise NotFound(f"image {name!r} not found in namespace {self.namespace!r}")
        return img

    def list(self, *filter_strings: str) -> builtins.list[Image]:
        flt = filters.parse(*filter_strings)
        with self.db.read() as cur:
            DB.require_namespace(cur, self.namespace)
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM images WHERE namespace=? ORDER BY name", (self.namespace,)
            ).fetchall()
        out = []
        for row in rows:
            img = _image(row)
            fields = {
                "name": img.name,
                "target.digest": img.target.digest,
                "target.mediatype": img.target.media_type,
            }
            if flt.match(filters.match_mapping(fields, img.labels)):
                out.append(img)
        return out

    def create(self, image: Image) -> Image:
        _validate(image)
        lb = labelutil.validate(image.labels)
        ts = timestamp()
        with self.db.write() as cur:
            DB.ensure_namespace(cur, self.namespace)
            if self._get(cur, image.name) is not None:
                raise AlreadyExists(f"image {image.name!r} already exists")
            t = image.target
            cur.execute(
                f"INSERT INTO images(namespace, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.namespace,
                    image.name,
                    t.media_type,
                    t.digest,
                    t.size,
                    dumps(t.annotations),
                    dumps(lb),
                    ts,
                    ts,
                ),
            )
            if labelutil.GC_EXPIRE in lb:
                add_resource(cur, self.namespace, self.lease, "images", image.name)
            created = self._get(cur, image.name)
        assert created is not None
        return created

    def update(self, image: Image, *fieldpaths: str) -> Image:
        """Update ``target`` and/or labels (``labels``, ``labels.<key>``); all of them without
        fieldpaths."""
        with self.db.write() as cur:
            cur_img = self._get(cur, image.name)
            if cur_img is None:
                raise NotFound(f"image {image.name!r} not found in namespace {self.namespace!r}")
            paths = list(fieldpaths) or ["target", "labels"]
            new = cur_img
            if "target" in paths:
                _validate_target(image)
                new = replace(new, target=image.target)
            label_paths = [fp for fp in paths if fp != "target"]
            if label_paths:
                labels = labelutil.update_by_fieldpaths(
                    new.labels, image.labels, label_paths, f"image {image.name!r}", others="target"
                )
                new = replace(new, labels=labels)
            t = new.target
            cur.execute(
                "UPDATE images SET target_media_type=?, target_digest=?, target_size=?, "
                "target_annotations=?, labels=?, updated_at=? WHERE namespace=? AND name=?",
                (
                    t.media_type,
                    t.digest,
                    t.size,
                    dumps(t.annotations),
                    dumps(new.labels),
                    timestamp(),
                    self.namespace,
                    image.name,
                ),
            )
            updated = self._get(cur, image.name)
        assert updated is not None
        return updated

    def upsert(self, image: Image) -> Image:
        """Name ``image.target`` ``image.name``: create the image, or, if the name exists,
        point it at the new target (its labels stay). What a pull, an import, a commit and a
        build do with the image they made."""
        try:
            return self.create(image)
        except AlreadyExists:
            return self.update(image, "target")

    def set_labels(self, name: str, changes: Mapping[str, str]) -> Image:
        img = Image(name, Descriptor("-", "sha256:" + "0" * 64, 0), dict(changes))
        return self.update(img, *(f"labels.{k}" for k in changes))

    def delete(self, name: str) -> None:
        with self.db.write() as cur:
            n = cur.execute(
                "DELETE FROM images WHERE namespace=? AND name=?", (self.namespace, name)
            ).rowcount
            if n == 0:
                raise NotFound(f"image {name!r} not found in namespace {self.namespace!r}")

    def lookup(self, ref: str) -> Image:
        """The image a user means by ``ref``, as docker and nerdctl find one (``rmi``,
        ``tag``, ``inspect``, ``run``, ``push``, ``export`` all take it so):

        1. the name as stored (``app:1`` names an image imported as ``app:1``);
        2. the normalised reference: ``alpine``, ``alpine:latest`` and
           ``docker.io/library/alpine:latest`` are one image, as a pull names it;
        3. ``name@sha256:<digest>``: an image of that repository whose target is that digest;
        4. an image ID: a prefix (with or without ``sha256:``) of the target's digest, the
           manifest or index digest nerdctl shows as IMAGE ID.

        NotFound if nothing matches; InvalidArgument if an ID prefix fits several images that
        are not one (different targets)."""
        import re

        from ctrstore.remotes.reference import parse

        with contextlib.suppress(NotFound):
            return self.get(ref)
        try:
            parsed = parse(ref)
        except InvalidArgument:
            parsed = None
        if parsed is not None:
            norm = str(parsed.docker_ref())
            if norm != ref:
                with contextlib.suppress(NotFound):
                    return self.get(norm)
            if parsed.digest:
                for img in self.list():
                    if img.target.digest != parsed.digest:
                        continue
                    try:
                        if parse(img.name).name == parsed.name:
                            return img
                    except InvalidArgument:
                        continue
        prefix = ref.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{1,64}", prefix):
            found = [i for i in self.list() if i.target.digest.startswith("sha256:" + prefix)]
            targets = {i.target.digest for i in found}
            if len(targets) == 1:
                return found[0]
            if len(targets) > 1:
                raise InvalidArgument(
                    f"image ID {ref!r} is ambiguous: {len(targets)} images start with it; give more of it"
                )
        raise NotFound(f"no such image: {ref} (not found in namespace {self.namespace!r})")
