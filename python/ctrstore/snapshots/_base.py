"""What every directory-backed snapshotter shares: a MetaStore, ``snapshots/<id>`` directories
built as ``new-*`` and renamed into place inside the recording transaction (and removed again if
that transaction fails to commit), removal of the record first and of the directory after its
commit (through an ``rm-<id>`` rename; a directory already gone is fine), and ``repair``/
``cleanup`` of what a crash between two steps leaves: directories that are not a live id,
records whose directory is gone.

A driver says only how a snapshot's directory is filled (``_populate``), where its tree is
(``_tree``), how it is mounted (``_mounts``) and, if it needs to, how a directory is deleted.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

from ctrstore.errdefs import FailedPrecondition, InvalidArgument
from ctrstore.mount import Mount
from ctrstore.snapshots import Info, Kind, Usage, remove_unreferenced
from ctrstore.snapshots._fs import disk_usage, remove_tree
from ctrstore.snapshots.storage import MetaStore, Snapshot


class DirectorySnapshotter:
    rebase = False
    """Whether an active snapshot prepared without a parent can be committed onto one (true
    where a snapshot's directory holds only its own changes, as overlay's upper dirs do)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "snapshots").mkdir(exist_ok=True, mode=0o700)
        self.ms = MetaStore(self.root / "metadata.db")

    # -- what a driver provides --------------------------------------------------------------
    def _tree(self, id_: str) -> Path:
        """The directory holding snapshot ``id_``'s files (what usage measures)."""
        raise NotImplementedError

    def _populate(self, tmp: Path, s: Snapshot) -> None:
        """Create the new snapshot's directory at ``tmp`` (a fresh ``new-*`` path) and fill it."""
        raise NotImplementedError

    def _mounts(self, s: Snapshot) -> list[Mount]:
        raise NotImplementedError

    def _delete_dir(self, path: Path) -> None:
        remove_tree(path)

    def _decorate(self, id_: str, info: Info) -> Info:
        return info

    # -- the interface ---------------------------------------------------------------------
    def close(self) -> None:
        self.ms.close()

    def _dir(self, id_: str) -> Path:
        return self.root / "snapshots" / id_

    def stat(self, key: str) -> Info:
        with self.ms.transaction(False) as cur:
            id_, info, _ = self.ms.get_info(cur, key)
        return self._decorate(id_, info)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        with self.ms.transaction(True) as cur:
            new = self.ms.update(cur, info, fieldpaths)
            id_ = self.ms.get_info(cur, info.name)[0]
        return self._decorate(id_, new)

    def usage(self, key: str) -> Usage:
        with self.ms.transaction(False) as cur:
            id_, info, usage = self.ms.get_info(cur, key)
        return disk_usage(self._tree(id_)) if info.kind == Kind.ACTIVE else usage

    def walk(self, *filters: str) -> Iterator[Info]:
        with self.ms.transaction(False) as cur:
            infos = self.ms.walk(cur, *filters)
            ids = {key: id_ for id_, key in self.ms.id_map(cur).items()}
        for info in infos:
            yield self._decorate(ids[info.name], info)

    def mounts(self, key: str) -> list[Mount]:
        with self.ms.transaction(False) as cur:
            s = self.ms.get_snapshot(cur, key)
        if s.kind == Kind.COMMITTED:
            raise FailedPrecondition(
                f"snapshot {key!r} is committed: only active snapshots and views have mounts"
            )
        return self._mounts(s)

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> list[Mount]:
        tmp = self._dir(f"new-{secrets.token_hex(6)}")
        placed: Path | None = None
        try:
            with self.ms.transaction(True) as cur:
                s = self.ms.create(cur, kind, key, parent, labels)
                self._populate(tmp, s)
                target = self._dir(s.id)
                if os.path.lexists(target):
                    # Left by a crash after a rename whose record never committed (ids of
                    # rolled-back records are handed out again): no record owns it.
                    self._delete_dir(target)
                os.rename(tmp, target)
                placed = target
        except BaseException:
            self._delete_dir(tmp)
            if placed is not None:
                self._delete_dir(placed)  # the record did not commit: no snapshot has this dir
            raise
        return self._mounts(s)

    def commit(
        self, name: str, key: str, labels: Mapping[str, str] | None = None, *, parent: str | None = None
    ) -> None:
        if parent is not None and not self.rebase:
            raise InvalidArgument(f"the {type(self).__name__} cannot commit onto a new parent")
        with self.ms.transaction(True) as cur:
            id_, info, _ = self.ms.get_info(cur, key)
            usage = disk_usage(self._tree(id_)) if info.kind == Kind.ACTIVE else Usage()
            self.ms.commit_active(cur, key, name, usage, labels, parent)
            self._committed(id_)

    def _committed(self, id_: str) -> None:
        """Hook for drivers that freeze a snapshot's directory on commit."""

    def remove(self, key: str) -> None:
        """Commit the record's removal, then remove the directory: a failed commit changes
        nothing, and a crash after it leaves a directory no record names, which ``cleanup``
        removes. A directory that is already gone is fine."""
        with self.ms.transaction(True) as cur:
            id_, _ = self.ms.remove(cur, key)
        # Renamed first, so that a half-removed tree is never at <id> (ids can be handed out again).
        doomed = self._dir(f"rm-{id_}")
        try:
            os.rename(self._dir(id_), doomed)
        except FileNotFoundError:
            return
        self._delete_dir(doomed)

    def cleanup(self) -> list[str]:
        """Remove directories that belong to no snapshot (crash leftovers, removed ids)."""
        return self._stray_dirs(False)

    def _stray_dirs(self, dry_run: bool) -> list[str]:
        with self.ms.transaction(False) as cur:
            live = set(self.ms.id_map(cur))
        removed = []
        for d in sorted((self.root / "snapshots").iterdir()):
            if d.name not in live:
                if not dry_run:
                    self._delete_dir(d)
                removed.append(d.name)
        return removed

    def missing_dirs(self) -> list[tuple[str, str]]:
        """``(id, key)`` of the snapshots whose directory is gone."""
        with self.ms.transaction(False) as cur:
            ids = self.ms.id_map(cur)
        return sorted((i, k) for i, k in ids.items() if not self._dir(i).is_dir())

    def repair(self, dry_run: bool = False) -> list[str]:
        """Make records and directories agree after a crash: a record whose directory is gone is
        removed, with every snapshot on top of it (their trees are incomplete without it); a
        directory no record names is removed. Returns what was (or, dry, would be) done."""
        done: list[str] = []
        missing = self.missing_dirs()
        if missing:
            with self.ms.transaction(True) as cur:
                doomed = self.ms.descendants(cur, [k for _, k in missing])
                for key in doomed:
                    done.append(f"snapshot {key!r} had no directory (or sits on one that had none): removed")
                    if not dry_run:
                        cur.execute("DELETE FROM snapshots WHERE key=?", (key,))
        done += [
            f"directory snapshots/{d} belonged to no snapshot: removed" for d in self._stray_dirs(dry_run)
        ]
        return done

    def gc_cleanup(self, keep: set[str], dry_run: bool) -> list[str]:
        return remove_unreferenced(self, keep, dry_run)
