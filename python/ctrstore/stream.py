"""Unpacking layers while they download: a pull's layer downloads, followed by the appliers.

A layer's download writes its bytes into its ingest (hashed there, by the Rust core) and
*publishes* the ingest here; an applier that wants the layer asks to *follow* it and gets a
handle (``ctrstore._core.IngestWatch``) from which the Rust applier reads the ingest back as
it grows: the bytes already on disk first (a resumed download, or a layer whose turn comes
after part of it arrived), then each chunk as it is written. The page cache is the buffer
between the two: a download never waits for its applier, and memory does not grow with the
lag. The writer's commit, which verifies the blob's size and digest, ends the applier's
stream; until then nothing the applier made is committed (``ctrstore.unpack`` commits a
snapshot only after the blob is verified and its diffID matches). A download that stops or
does not verify breaks the stream off, and the applier fails.

Bandwidth goes to the layers being applied first: a download that no applier follows (its
layer cannot be applied yet, as on the native and btrfs snapshotters, whose layers go in
order; or it needs no applying) pauses while followed downloads run, reading a little
(``KEEPALIVE_BYTES``) every ``KEEPALIVE`` seconds so that its connection stays alive, and goes
on at full speed once they are done. On a shared link the layer being applied then arrives
first, and the others wait in their ingests, to be replayed from disk when their turn comes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ctrstore._core import IngestWatch
from ctrstore.errdefs import Aborted

__all__ = ["KEEPALIVE", "KEEPALIVE_BYTES", "LiveIngests"]

KEEPALIVE = 1.0
"""Seconds a download may pause for followed ones before it reads again."""

KEEPALIVE_BYTES = 64 * 1024
"""What a paused download reads when it reads to keep its connection alive."""

_POLL = 0.05
"""How often a paused download looks whether an applier started following it."""


class LiveIngests:
    """The layer downloads of one pull that appliers can follow while they run.

    The pull says which blobs to expect (``expect``); each of their downloads ``publish``es
    its ingest once its stream is open and calls ``pace`` before each chunk, and ``over``
    when it ends, however it ends. Appliers call ``follow``. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._expected: set[str] = set()
        self._live: dict[str, IngestWatch] = {}
        self._latest: dict[str, IngestWatch] = {}
        """The watch each download published last (one that starts over publishes anew)."""
        self._over: set[str] = set()
        self._followed: set[str] = set()
        self._cancelled: str | None = None

    # -- the pull ------------------------------------------------------------------------
    def expect(self, digests: Iterable[str]) -> None:
        """Blobs whose downloads appliers may follow (a pull's layers)."""
        with self._cond:
            self._expected.update(digests)

    def cancel(self, reason: str) -> None:
        """Give up: every applier following a download fails (Aborted), and ``follow`` raises
        from now on. The downloads themselves go on (a pull keeps the blobs it fetched)."""
        with self._cond:
            if self._cancelled is None:
                self._cancelled = reason
            watches = list(self._live.values())
            self._cond.notify_all()
        for w in watches:
            w.cancel(reason)

    @property
    def cancelled(self) -> bool:
        return self._cancelled is not None

    # -- downloads -----------------------------------------------------------------------
    def publish(self, digest: str, watch: Callable[[], IngestWatch]) -> IngestWatch | None:
        """The download of ``digest`` writes into an ingest now; ``watch`` makes the handle
        on it (``Writer.watch``). Returns that handle, to ``pace`` with; None if nobody will
        follow this download (not a blob the pull expects)."""
        with self._cond:
            if digest not in self._expected:
                return None
        w = watch()
        with self._cond:
            self._live[digest] = w
            self._latest[digest] = w
            self._over.discard(digest)
            cancelled = self._cancelled
            self._cond.notify_all()
        if cancelled is not None:
            w.cancel(cancelled)
        return w

    def over(self, digest: str) -> None:
        """The download of ``digest`` ended: its blob is in the content store, or it failed."""
        with self._cond:
            self._live.pop(digest, None)
            self._followed.discard(digest)
            self._over.add(digest)
            self._cond.notify_all()

    def pace(self, digest: str, watch: IngestWatch, chunk: int) -> int:
        """Called by a download before it reads: how much to read now. A followed download
        reads ``chunk`` at once; one nobody follows waits while followed ones run (until an
        applier starts following it, or they are done: then ``chunk``), but at most
        ``KEEPALIVE`` seconds: then it reads ``KEEPALIVE_BYTES`` to keep its connection alive."""
        if watch.readers:
            with self._cond:
                self._followed.add(digest)
            return chunk
        with self._cond:
            if digest in self._followed:
                self._followed.discard(digest)
                self._cond.notify_all()
            deadline = time.monotonic() + KEEPALIVE
            while self._followed and self._cancelled is None and not watch.readers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return min(chunk, KEEPALIVE_BYTES)
                self._cond.wait(min(left, _POLL))
        return chunk

    # -- appliers ------------------------------------------------------------------------
    def started_over(self, digest: str, watch: IngestWatch) -> bool:
        """Whether the download of ``digest`` started over after ``watch`` was published: the
        bytes followed failed verification and the fetcher fetched the blob again, from a
        source it trusts more (``ctrstore.images.pull.Fetcher``'s ``distrust``). What was
        applied from ``watch`` is then to be thrown away and the blob applied again."""
        with self._cond:
            return self._latest.get(digest, watch) is not watch

    def follow(self, digest: str) -> IngestWatch | None:
        """Wait until the download of ``digest`` is under way (its watch, to apply from) or
        over (None: the blob is in the content store, or its download failed). Aborted once
        the unpack was given up."""
        with self._cond:
            while True:
                if self._cancelled is not None:
                    raise Aborted(self._cancelled)
                if digest in self._live:
                    return self._live[digest]
                if digest in self._over or digest not in self._expected:
                    return None
                self._cond.wait()
