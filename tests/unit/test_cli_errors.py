"""The CLI's last line of defence: every failure is one line, the traceback only on request."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
from pathlib import Path

from ctrstore.cli._errors import describe
from ctrstore.errdefs import NotFound


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


def test_errdefs_errors_keep_their_kind() -> None:
    assert describe(NotFound("image x not found")) == "not found: image x not found"


def test_oserror_names_the_file() -> None:
    line = describe(_raised(PermissionError(errno.EACCES, "Permission denied", "/srv/blobs")))
    assert line == "permission denied: /srv/blobs: Permission denied"


def test_no_space_says_how_much_is_free(tmp_path: Path) -> None:
    line = describe(_raised(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "y"))))
    assert line.startswith(f"no space left on device while writing {tmp_path / 'x' / 'y'}: ")
    assert " MB free on " in line


def test_unexpected_errors_name_type_and_place() -> None:
    line = describe(_raised(KeyError("layers")))
    assert line.startswith("internal error: KeyError in _raised (test_cli_errors.py:")
    assert "\n" not in describe(_raised(sqlite3.OperationalError("database or disk is full")))


def _ctrstore(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dirs = ["--root", str(tmp_path / "root"), "--state", str(tmp_path / "state")]
    return subprocess.run(
        [sys.executable, "-m", "ctrstore", *dirs, *args], capture_output=True, text=True, timeout=60
    )


def test_cli_prints_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file at all\n" * 10)
    p = _ctrstore(tmp_path, "images", "import", str(junk))
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("ctrstore: ")
    d = _ctrstore(tmp_path, "--debug", "images", "import", str(junk))
    assert d.returncode == 1
    assert d.stderr.strip().splitlines()[-1] == p.stderr.strip()
