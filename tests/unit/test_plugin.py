from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ctrstore import FailedPrecondition, InvalidArgument
from ctrstore.plugin import InitContext, PluginSet, Registration, Registry, SkipPlugin


@dataclass
class Cfg:
    size: int = 1
    name: str = "x"


def make(
    tmp_path: Path,
    reg: Registry,
    tables: dict[str, dict[str, object]] | None = None,
    disabled: set[str] | None = None,
) -> PluginSet:
    return PluginSet(tmp_path / "root", tmp_path / "state", tables or {}, disabled or set(), reg)


def test_dependency_order_dirs_and_config(tmp_path: Path) -> None:
    reg = Registry()
    seen: list[str] = []

    def init(ic: InitContext) -> str:
        seen.append(ic.registration.uri)
        return f"{ic.registration.id}:{ic.root.name}:{ic.config.size if ic.config else '-'}"

    reg.register(Registration("t.meta", "m", init, requires=("t.content", "t.snap")))
    reg.register(Registration("t.snap", "s", init, requires=("t.content",), config=Cfg()))
    reg.register(Registration("t.content", "c", init))
    ps = make(tmp_path, reg, {"t.snap.s": {"size": 5}})
    assert seen == ["t.content.c", "t.snap.s", "t.meta.m"]
    assert ps.get_single("t.snap", str) == "s:t.snap.s:5"


def test_skip_error_and_dependents(tmp_path: Path) -> None:
    reg = Registry()

    def skip(ic: InitContext) -> None:
        raise SkipPlugin("not on btrfs")

    def boom(ic: InitContext) -> None:
        raise OSError("disk on fire")

    reg.register(Registration("t.snap", "btrfs", skip))
    reg.register(Registration("t.content", "c", boom))
    reg.register(Registration("t.meta", "m", lambda ic: 1, requires=("t.content",)))
    ps = make(tmp_path, reg)
    status = {p.uri: (p.status, p.error) for p in ps}
    assert status["t.snap.btrfs"] == ("skip", "not on btrfs")
    assert status["t.content.c"] == ("error", "disk on fire")
    assert status["t.meta.m"][0] == "error"
    assert "t.content.c failed" in (status["t.meta.m"][1] or "")
    with pytest.raises(FailedPrecondition, match="no working plugin"):
        ps.get_single("t.content")


def test_disabled_and_bad_tables(tmp_path: Path) -> None:
    reg = Registry()
    reg.register(Registration("t.a", "a", lambda ic: 1, config=Cfg()))
    reg.register(Registration("t.b", "b", lambda ic: 2))
    ps = make(tmp_path, reg, {"t.a.a": {"sise": 1}}, disabled={"t.b.b"})
    assert ps.get("t.b.b").status == "skip"
    a = ps.get("t.a.a")
    assert a.status == "error" and "unknown key 'sise'" in (a.error or "")
    ps = make(tmp_path, reg, {"t.a.a": {"size": "big"}})
    assert "size must be int" in (ps.get("t.a.a").error or "")


def test_cycle_and_duplicates() -> None:
    reg = Registry()
    reg.register(Registration("t.a", "a", lambda ic: 1, requires=("t.b",)))
    reg.register(Registration("t.b", "b", lambda ic: 1, requires=("t.a",)))
    with pytest.raises(FailedPrecondition, match="cycle"):
        reg.graph()
    with pytest.raises(Exception, match="twice"):
        reg.register(Registration("t.a", "a", lambda ic: 1))
    with pytest.raises(InvalidArgument):
        reg.register(Registration("", "a", lambda ic: 1))
