"""Named volumes, as docker's ``local`` volume driver and nerdctl keep them: a directory per
volume that containers bind-mount, outliving every container that uses it.

The volume plugin (``io.containerd.volume.v1.local``) owns the files; meta.db owns the records
(table ``volumes``: namespace, name, driver, labels, times), so a volume is created, listed and
removed in the same transactions as everything else the store records::

    <root>/io.containerd.volume.v1.local/volumes/<namespace>/<name>/_data

``_data`` is what a container sees at its mount point (``-v NAME:/path``); volumes are
namespaced, as nerdctl's (``<data root>/volumes/<namespace>/<name>/_data``).

- **Created on first use** (``run -v NAME:/path`` creates NAME if it does not exist) or by
  ``volume create``. The directory is made as ``.new-<random>`` and renamed into place inside the
  recording transaction; a failed commit removes it again. A directory that is there without a
  record (a lost meta.db) is adopted, never emptied.
- **In use** means a container's spec mounts the volume's ``_data``: the container record is
  the one truth, so nothing needs updating when a container goes. Removing a volume in use is
  refused (``FailedPrecondition`` naming the containers); removal commits the record's deletion
  first, then renames the directory to ``.rm-<name>-<random>`` and deletes it.
- **Anonymous** volumes (``-v /path``, an image's ``Volumes``) are labelled
  ``com.docker.volume.anonymous``, have a random 64-hex name, and go with their container on
  ``rm -v`` (or ``run --rm``); ``volume prune`` removes unused anonymous volumes, ``--all``
  every unused one.

Volumes are not garbage collected: only ``volume rm``/``prune`` (or ``rm -v``) remove them.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ctrstore import labels as labelutil
from ctrstore._timeutil import format_rfc3339, parse_rfc3339
from ctrstore.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, from_oserror
from ctrstore.metadata.db import DB, dumps, loads_labels, timestamp, validate_identifier
from ctrstore.snapshots._fs import remove_tree

__all__ = [
    "DRIVER",
    "LocalVolumes",
    "Volume",
    "VolumeStore",
    "disk_usage",
    "filter_volumes",
    "validate_volume_name",
]

DRIVER = "local"
"""The only volume driver: directories under the plugin's root."""

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MAX_NAME = 255
"""A volume's name is a directory name: at most 255 bytes."""


def validate_volume_name(name: str) -> str:
    """``name`` if it is a valid volume name (docker's rule: a letter or digit, then at least
    one more of letters, digits, ``_``, ``.``, ``-``; at most 255 characters); else
    InvalidArgument. ``run -v`` takes a source matching this rule for a volume, not a path."""
    if not _NAME.match(name) or len(name.encode()) > MAX_NAME:
        raise InvalidArgument(
            f"volume name {name!r} is invalid: use 2 to {MAX_NAME} letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def disk_usage(path: Path) -> int:
    """Bytes (allocated blocks, as ``du``) of a tree, hard-linked files counted once; a tree
    that is gone is 0."""
    seen: set[tuple[int, int]] = set()
    size = 0
    stack = [str(path)]
    while stack:
        d = stack.pop()
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            continue
        size += st.st_blocks * 512
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                        continue
                    est = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                ident = (est.st_dev, est.st_ino)
                if est.st_nlink > 1:
                    if ident in seen:
                        continue
                    seen.add(ident)
                size += est.st_blocks * 512
    return size


@dataclass(frozen=True)
class Volume:
    """A volume of one namespace. ``mountpoint`` is its ``_data`` directory, what containers
    mount."""

    name: str
    namespace: str
    mountpoint: Path
    driver: str = DRIVER
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def anonymous(self) -> bool:
        """Made for one container (``-v /path``, an image's ``Volumes``)."""
        return labelutil.VOLUME_ANONYMOUS in self.labels

    def to_json(self) -> dict[str, Any]:
        """``docker volume inspect``'s fields."""
        return {
            "CreatedAt": format_rfc3339(self.created_at) if self.created_at else None,
            "Driver": self.driver,
            "Labels": dict(self.labels),
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": {},
            "Scope": "local",
        }


class LocalVolumes:
    """The plugin's instance: the volumes directory (``<plugin root>/volumes``) and meta.db."""

    def __init__(self, root: str | os.PathLike[str], db: DB) -> None:
        # Absolute: containers' specs name volumes by this path (a relative --root would give
        # runc a path relative to the bundle, and in-use checks another spelling).
        self.root = Path(os.path.abspath(root))
        self.dir = self.root / "volumes"
        self.db = db

    def store(self, namespace: str) -> VolumeStore:
        return VolumeStore(self.db, self.dir, namespace)

    def namespaces(self) -> builtins.list[str]:
        """The namespaces that have a volumes directory."""
        try:
            return sorted(p.name for p in self.dir.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []


_COLS = "name, driver, labels, created_at"


def _mounted_volumes(spec_text: str, base: str) -> set[str]:
    """The names of the volumes under ``base`` (a namespace's volumes directory) whose
    ``_data`` a container spec mounts."""
    try:
        spec = json.loads(spec_text)
    except ValueError:
        return set()
    mounts = spec.get("mounts") if isinstance(spec, dict) else None
    out: set[str] = set()
    for m in mounts if isinstance(mounts, list) else []:
        source = m.get("source") if isinstance(m, dict) else None
        if not isinstance(source, str) or not source.startswith(base):
            continue
        name, _, rest = source[len(base) :].partition("/")
        if rest.rstrip("/") == "_data" or rest.startswith("_data/"):
            out.add(name)
    return out


class VolumeStore:
    """The volumes of one namespace."""

    def __init__(self, db: DB, root: Path, namespace: str) -> None:
        self.db = db
        self.namespace = validate_identifier("namespace", namespace)
        self.root = root / namespace
        self.driver = DRIVER

    # -- places ------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The volume's directory (``<name>``, holding ``_data``)."""
        return self.root / validate_volume_name(name)

    def mountpoint(self, name: str) -> Path:
        return self.path(name) / "_data"

    def _volume(self, row: tuple[Any, ...]) -> Volume:
        name, driver, lb, created = row
        return Volume(
            name, self.namespace, self.mountpoint(name), driver, loads_labels(lb), parse_rfc3339(created)
        )

    # -- reading -----------------------------------------------------------------------------
    def _get(self, cur: sqlite3.Cursor, name: str) -> Volume | None:
        row = cur.execute(
            f"SELECT {_COLS} FROM volumes WHERE namespace=? AND name=?", (self.namespace, name)
        ).fetchone()
        return None if row is None else self._volume(row)

    def get(self, name: str) -> Volume:
        validate_volume_name(name)
        with self.db.read() as cur:
            v = self._get(cur, name)
        if v is None:
            raise NotFound(f"no such volume: {name} (namespace {self.namespace!r})")
        return v

    def list(self, *filters: str) -> builtins.list[Volume]:
        """The namespace's volumes, by name; ``filters`` are docker's ``volume ls --filter``
        ones (see :func:`filter_volumes`)."""
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT {_COLS} FROM volumes WHERE namespace=? ORDER BY name", (self.namespace,)
            ).fetchall()
        vols = [self._volume(r) for r in rows]
        return filter_volumes(vols, self.users(), filters) if filters else vols

    def _users(self, cur: sqlite3.Cursor) -> dict[str, builtins.list[str]]:
        base = f"{self.root}/"
        out: dict[str, builtins.list[str]] = {}
        for cid, spec in cur.execute(
            "SELECT id, spec FROM containers WHERE namespace=? ORDER BY id", (self.namespace,)
        ):
            for name in _mounted_volumes(spec, base):
                out.setdefault(name, []).append(cid)
        return out

    def users(self) -> dict[str, builtins.list[str]]:
        """Volume name -> the ids of the containers whose spec mounts it (stopped ones too)."""
        with self.db.read() as cur:
            return self._users(cur)

    def usage(self, name: str) -> int:
        """Bytes the volume takes on disk (``du`` of its directory)."""
        return disk_usage(self.path(name))

    # -- writing -----------------------------------------------------------------------------
    def create(
        self, name: str | None = None, labels: Mapping[str, str] | None = None, *, anonymous: bool = False
    ) -> Volume:
        """Create a volume (AlreadyExists if the namespace has one of that name). Without a
        name, a random one (64 hex digits, as docker's). ``anonymous``: made for one container
        (labelled ``com.docker.volume.anonymous``)."""
        name = validate_volume_name(name) if name else secrets.token_hex(32)
        lb = dict(labels or {})
        if anonymous:
            lb[labelutil.VOLUME_ANONYMOUS] = "true"
        lb = labelutil.validate(lb)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise from_oserror(e, f"volume {name}: making {self.root}") from None
        target = self.path(name)
        tmp = self.root / f".new-{secrets.token_hex(6)}"
        placed = False
        try:
            with self.db.write() as cur:
                DB.ensure_namespace(cur, self.namespace)
                if self._get(cur, name) is not None:
                    raise AlreadyExists(f"volume {name!r} already exists in namespace {self.namespace!r}")
                if not os.path.isdir(target / "_data"):
                    # No record and no data: make it. (A directory with data but no record —
                    # a lost meta.db — is adopted as it is, never emptied.)
                    try:
                        tmp.mkdir(mode=0o700)
                        (tmp / "_data").mkdir(mode=0o755)
                        os.chmod(tmp / "_data", 0o755)
                        if os.path.lexists(target):
                            remove_tree(target)
                        os.rename(tmp, target)
                    except OSError as e:
                        raise from_oserror(e, f"volume {name}: making {target}") from None
                    placed = True
                ts = timestamp()
                cur.execute(
                    "INSERT INTO volumes(namespace, name, driver, labels, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (self.namespace, name, self.driver, dumps(lb), ts, ts),
                )
                created = self._get(cur, name)
        except BaseException:
            remove_tree(tmp)
            if placed:
                remove_tree(target)  # the record did not commit: nothing names this directory
            raise
        assert created is not None
        return created

    def ensure(self, name: str) -> tuple[Volume, bool]:
        """The volume ``name``, created if it does not exist (a ``-v NAME:/path`` on first
        use); and whether it was created now."""
        for _ in range(3):
            try:
                return self.get(name), False
            except NotFound:
                pass
            try:
                return self.create(name), True
            except AlreadyExists:
                continue  # another process made it meanwhile
        return self.get(name), False

    def set_labels(self, name: str, changes: Mapping[str, str]) -> Volume:
        """Set (or, with an empty value, remove) labels."""
        with self.db.write() as cur:
            v = self._get(cur, validate_volume_name(name))
            if v is None:
                raise NotFound(f"no such volume: {name} (namespace {self.namespace!r})")
            merged = labelutil.apply_update(v.labels, changes)
            cur.execute(
                "UPDATE volumes SET labels=?, updated_at=? WHERE namespace=? AND name=?",
                (dumps(merged), timestamp(), self.namespace, name),
            )
            out = self._get(cur, name)
        assert out is not None
        return out

    def remove(self, name: str) -> None:
        """Remove a volume and its data. A volume a container uses (running or not) is refused
        (FailedPrecondition naming the containers); one that does not exist is NotFound."""
        self.remove_many([name])

    def remove_many(self, names: Iterable[str], *, if_unused: bool = False) -> builtins.list[str]:
        """Remove volumes in one transaction; their directories go after it commits. A volume
        in use is refused (FailedPrecondition, nothing removed) unless ``if_unused``, which
        skips it instead (as prune does), as it does missing ones. Returns the names removed."""
        wanted = list(dict.fromkeys(validate_volume_name(n) for n in names))
        removed: builtins.list[str] = []
        with self.db.write() as cur:
            users = self._users(cur)
            for name in wanted:
                if self._get(cur, name) is None:
                    if if_unused:
                        continue
                    raise NotFound(f"no such volume: {name} (namespace {self.namespace!r})")
                if users.get(name):
                    if if_unused:
                        continue
                    ids = ", ".join(c[:12] for c in users[name])
                    raise FailedPrecondition(
                        f"volume {name} is in use by container {ids}: remove the container first"
                    )
                removed.append(name)
            for name in removed:
                cur.execute("DELETE FROM volumes WHERE namespace=? AND name=?", (self.namespace, name))
        for name in removed:
            self._delete_dir(name)
        return removed

    def _delete_dir(self, name: str) -> None:
        """Rename the directory out of the way (so a new volume of that name starts empty even
        if the removal is cut short), then remove it."""
        doomed = self.root / f".rm-{name}-{secrets.token_hex(4)}"
        try:
            os.rename(self.path(name), doomed)
        except FileNotFoundError:
            return
        except OSError as e:
            raise from_oserror(e, f"volume {name}: removing {self.path(name)}") from None
        remove_tree(doomed)

    def strays(self) -> builtins.list[Path]:
        """Directories left by a create or remove cut short (``.new-*``, ``.rm-*``)."""
        try:
            return sorted(p for p in self.root.iterdir() if p.name.startswith((".new-", ".rm-")))
        except FileNotFoundError:
            return []

    def cleanup(self) -> builtins.list[str]:
        """Remove what :meth:`strays` lists; returns their names."""
        out = []
        for p in self.strays():
            remove_tree(p)
            out.append(p.name)
        return out


def filter_volumes(
    volumes: Sequence[Volume], users: Mapping[str, Sequence[str]], filters: Sequence[str]
) -> builtins.list[Volume]:
    """Docker's ``volume ls --filter``: ``name=SUBSTRING``, ``label=KEY`` or ``label=KEY=VALUE``,
    ``dangling=true|false`` (used by no container), ``driver=local``. Filters of one key are
    OR'ed, different keys AND'ed, as docker does."""
    by_key: dict[str, builtins.list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or key not in ("name", "label", "dangling", "driver"):
            raise InvalidArgument(
                f"volume filter {f!r}: expected name=, label=, dangling= or driver= (KEY=VALUE)"
            )
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"volume filter {f!r}: dangling takes true or false")
        by_key.setdefault(key, []).append(value)

    def ok(v: Volume) -> bool:
        for key, values in by_key.items():
            if key == "name" and not any(x in v.name for x in values):
                return False
            if key == "driver" and v.driver not in values:
                return False
            if key == "dangling" and not any(
                (x.lower() in ("true", "1")) == (not users.get(v.name)) for x in values
            ):
                return False
            if key == "label" and not all(_label_match(v.labels, x) for x in values):
                return False
        return True

    return [v for v in volumes if ok(v)]


def _label_match(labels: Mapping[str, str], want: str) -> bool:
    k, sep, val = want.partition("=")
    return k in labels and (not sep or labels[k] == val)
