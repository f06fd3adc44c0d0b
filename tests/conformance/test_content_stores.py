"""The content-store conformance suite (``contentsuite.py``, after containerd's
``core/content/testsuite``) on every content store: the local store (the files alone) and the
metadata store's namespaced view under both sharing policies. One test per (store, case), each
on a fresh, empty store."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, cast

import pytest

from ctrstore.content import Info, Status
from ctrstore.content.local import LocalStore
from ctrstore.metadata import Metadata
from ctrstore.metadata.content import SharingPolicy
from ctrstore.metadata.db import DB

from .contentsuite import CASES, Store, Writer, run

STORES = ["local", "metadata-shared", "metadata-isolated"]

KNOWN_BUGS: dict[tuple[str, str], str] = {}
"""Cases that fail on a store because of a bug not fixed yet: strict xfails, so the fix makes
them pass and fail the run until they are taken off this list."""


class Local:
    """``LocalStore``: blobs and ingests on disk; no labels, no namespaces."""

    features: frozenset[str] = frozenset()

    def __init__(self, root: Path) -> None:
        self.s = LocalStore(root)

    def writer(self, ref: str, total: int | None = None, expected: str | None = None) -> Writer:
        return self.s.writer(ref, total, expected)

    def commit(
        self, w: Writer, size: int = 0, expected: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str:
        assert hasattr(w, "commit")
        digest: str = w.commit(size, expected)
        return digest

    def copy(self, ref: str, source: io.RawIOBase | io.BytesIO, size: int, expected: str) -> str:
        raise NotImplementedError("the local store has no copy helper")

    def status(self, ref: str) -> Status:
        return self.s.status(ref)

    def list_statuses(self) -> list[Status]:
        return list(self.s.list_statuses())

    def abort(self, ref: str) -> None:
        self.s.abort(ref)

    def info(self, digest: str) -> Info:
        return self.s.info(digest)

    def update(self, digest: str, labels: Mapping[str, str], fieldpaths: Sequence[str] = ()) -> Info:
        raise NotImplementedError("the local store keeps no labels")

    def read(self, digest: str) -> bytes:
        with self.s.open(digest) as f:
            return f.read()

    def exists(self, digest: str) -> bool:
        return self.s.exists(digest)

    def walk(self) -> list[Info]:
        return list(self.s.walk())

    def delete(self, digest: str) -> None:
        self.s.delete(digest)

    def other(self, *, shareable: bool = False) -> Store:
        raise NotImplementedError("the local store has no namespaces")


class Namespaced:
    """The metadata store's ``ContentStore`` of one namespace."""

    def __init__(self, md: Metadata, namespace: str, policy: SharingPolicy) -> None:
        self.md = md
        self.policy = policy
        self.cs = md.content(namespace)
        self.features = frozenset({"labels", "namespaces", "copy", policy})

    def writer(self, ref: str, total: int | None = None, expected: str | None = None) -> Writer:
        return self.cs.writer(ref, total=total, expected=expected)

    def commit(
        self, w: Writer, size: int = 0, expected: str | None = None, labels: Mapping[str, str] | None = None
    ) -> str:
        assert hasattr(w, "commit")
        digest: str = w.commit(size, expected, labels)
        return digest

    def copy(self, ref: str, source: io.RawIOBase | io.BytesIO, size: int, expected: str) -> str:
        return self.cs.ingest(ref, cast(IO[bytes], source), expected=expected, size=size)

    def status(self, ref: str) -> Status:
        return self.cs.status(ref)

    def list_statuses(self) -> list[Status]:
        return self.cs.list_statuses()

    def abort(self, ref: str) -> None:
        self.cs.abort(ref)

    def info(self, digest: str) -> Info:
        return self.cs.info(digest)

    def update(self, digest: str, labels: Mapping[str, str], fieldpaths: Sequence[str] = ()) -> Info:
        return self.cs.update(Info(digest, labels=dict(labels)), *fieldpaths)

    def read(self, digest: str) -> bytes:
        return self.cs.read_bytes(digest)

    def exists(self, digest: str) -> bool:
        return self.cs.exists(digest)

    def walk(self) -> list[Info]:
        return list(self.cs.walk())

    def delete(self, digest: str) -> None:
        self.cs.delete(digest)

    def other(self, *, shareable: bool = False) -> Store:
        name = f"other-{secrets.token_hex(3)}"
        labels = {"containerd.io/namespace.shareable": "true"} if shareable else {}
        self.md.namespaces.create(name, labels)
        return Namespaced(self.md, name, self.policy)


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind: str = request.param
    if kind == "local":
        yield Local(tmp_path / "content")
        return
    policy: SharingPolicy = "shared" if kind == "metadata-shared" else "isolated"
    db = DB(tmp_path / "meta.db")
    md = Metadata(db, LocalStore(tmp_path / "content"), policy=policy)
    md.namespaces.create("test")
    try:
        yield Namespaced(md, "test", policy)
    finally:
        db.close()


@pytest.mark.parametrize(
    ("store", "case"),
    [
        pytest.param(
            kind,
            case,
            id=f"{kind}-{case}",
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[kind, case])]
            if (kind, case) in KNOWN_BUGS
            else [],
        )
        for kind in STORES
        for case in CASES
    ],
    indirect=["store"],
)
def test_conformance(store: Store, case: str) -> None:
    run(case, store)
