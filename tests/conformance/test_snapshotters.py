"""containerd's snapshotter conformance suite (``ctrstore.snapshots.testsuite``) run on every
snapshotter: one test per (snapshotter, case), each on a fresh snapshotter."""

from __future__ import annotations

import functools

import pytest

from ctrstore.snapshots.testsuite import CASES, check_rename

from .conftest import SNAPSHOTTERS, Subject

pytestmark = pytest.mark.root


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("subject", SNAPSHOTTERS, indirect=True)
def test_conformance(subject: Subject, case: str) -> None:
    check = CASES[case]
    if case == "Rename":
        # As containerd: overlay without redirect_dir cannot rename a lower directory (EXDEV).
        check = functools.partial(check_rename, skip_rename_dir=subject.overlay_backed)
    check(subject.sn, subject.work)
