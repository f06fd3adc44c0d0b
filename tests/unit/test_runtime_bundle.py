"""A task's bundle (``ctrstore.runtime.bundle``), the process checks behind a task's state
(``ctrstore.runtime._proc``) and the shim's answer to its starter, without a container: what
other processes may do to a bundle at the same time, and which error class comes back."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest

from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unknown,
)
from ctrstore.runtime._proc import alive
from ctrstore.runtime.bundle import Bundle
from ctrstore.runtime.shim import error_answer
from ctrstore.runtime.tasks import shim_error


def make_bundle(tmp_path: Path, cid: str = "c1") -> Bundle:
    b = Bundle.of(tmp_path / "state", tmp_path / "root", "default", cid)
    b.create()
    b.write_spec({"process": {"args": ["true"]}})
    b.write_exit(0)
    return b


def test_layout(tmp_path: Path) -> None:
    b = make_bundle(tmp_path)
    assert b.path == tmp_path / "state" / "default" / "c1"
    assert (b.path.stat().st_mode & 0o777, b.path.parent.stat().st_mode & 0o777) == (0o700, 0o711)
    assert (b.path / "work").resolve() == b.work == tmp_path / "root" / "default" / "c1"
    assert b.rootfs.is_dir() and b.has_spec() and not b.wants_terminal()
    assert json.loads(b.config_json.read_text()) == {"process": {"args": ["true"]}}
    status, exited_at = b.read_exit() or (None, None)
    assert status == 0 and exited_at
    assert b.recorder_alive() is None  # nobody ever recorded this task
    b.remove()
    assert not b.path.exists() and not b.work.exists()
    assert sorted(p.name for p in b.path.parent.iterdir()) == []


def test_remove_while_another_process_records_an_exit(tmp_path: Path) -> None:
    """``ps`` records a lost task's exit status (``exit.json``) whenever it finds none, which
    can be while ``rm`` removes the bundle: the bundle must still go, nothing left behind.
    (A single removal pass left the dir with the new ``exit.json`` in it.)"""
    for i in range(20):
        b = make_bundle(tmp_path, f"c{i}")
        stop = threading.Event()

        def record(b: Bundle = b, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                with suppress(OSError):  # as Tasks.status does: the bundle may be gone
                    b.write_exit(255)

        writer = threading.Thread(target=record)
        writer.start()
        try:
            time.sleep(0.005)
            b.remove()
        finally:
            stop.set()
            writer.join(10)
        left = sorted(p.name for p in b.path.parent.iterdir())
        assert not b.path.exists() and not b.tombstone.exists(), left
    assert sorted(p.name for p in (tmp_path / "state" / "default").iterdir()) == []


def test_remove_finishes_an_interrupted_removal(tmp_path: Path) -> None:
    b = make_bundle(tmp_path)
    b.tombstone.mkdir()
    (b.tombstone / "exit.json").write_text("{}")  # a remove that was killed half way
    b.remove()
    assert sorted(p.name for p in b.path.parent.iterdir()) == []
    b.create()  # and the same id can have a bundle again
    assert b.rootfs.is_dir()


def test_alive_while_the_process_is_reaped() -> None:
    """``/proc/<pid>/stat`` read just as the process is reaped fails with ESRCH; that
    process is not alive (it used to raise ProcessLookupError out of ``ps`` and ``wait``).
    Bounded: 2 seconds of short-lived processes."""
    deadline = time.monotonic() + 2
    failures: list[BaseException] = []
    while time.monotonic() < deadline and not failures:
        p = subprocess.Popen(["true"])
        done = threading.Event()

        def look(pid: int = p.pid, done: threading.Event = done) -> None:
            while not done.is_set():
                try:
                    alive(pid)
                except BaseException as e:
                    failures.append(e)
                    return

        t = threading.Thread(target=look)
        t.start()
        p.wait(timeout=10)
        time.sleep(0.001)
        done.set()
        t.join(10)
    assert failures == []


# -- the shim's answer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, Unavailable, Internal, CtrstoreError],
)
def test_shim_errors_keep_their_kind(tmp_path: Path, cls: type[CtrstoreError]) -> None:
    """What the shim answers for a failure is JSON with the errdefs kind; its starter raises
    the same class again, with the message (the base class's kind, "unknown", is Unknown)."""
    answer = json.dumps(error_answer(cls("OCI runtime create failed: boom")))
    err = shim_error("c1", answer, make_bundle(tmp_path))
    assert type(err) is (Unknown if cls is CtrstoreError else cls)
    assert str(err) == "starting container c1: OCI runtime create failed: boom"


def test_shim_answers(tmp_path: Path) -> None:
    b = make_bundle(tmp_path)
    assert shim_error("c1", '{"ok": true}\n', b) is None
    # Not an errdefs error (a bug in the shim): internal.
    err = shim_error("c1", json.dumps(error_answer(OSError("disk on fire"))), b)
    assert isinstance(err, Internal) and str(err) == "starting container c1: disk on fire"
    # A shim that died before answering: internal, with the last line of its log.
    b.shim_log.write_text("Traceback ...\nModuleNotFoundError: No module named 'x'\n")
    for answer in ("", "garbage", "[]", '{"error": 3}'):
        err = shim_error("c1", answer, b)
        assert isinstance(err, Internal)
        assert str(err) == "starting container c1: the shim died: ModuleNotFoundError: No module named 'x'"
