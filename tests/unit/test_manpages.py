"""Man pages generated from the CLI (``python -m ctrstore.cli.manpages``, run by
``scripts/setup`` into ``man/man1``): one per command and subcommand, valid roff (groff
warns about nothing), readable by ``man``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ctrstore.cli import cli

TIMEOUT = 120

needs_groff = pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (groff-base)")


def _command_paths() -> list[list[str]]:
    """Every command's path below ``ctrstore``, from the CLI itself."""
    out: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        out.append(path)
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, [*path, name], ctx)

    walk(cli, ["ctrstore"], None)
    return out


@pytest.fixture(scope="module")
def man1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man") / "man1"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    subprocess.run(
        [sys.executable, "-m", "ctrstore.cli.manpages", str(out)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
        env=env,
    )
    return out


def test_a_page_for_every_command(man1: Path) -> None:
    paths = _command_paths()
    assert len(paths) > 50
    have = {p.name for p in man1.iterdir()}
    want = {"-".join(p) + ".1" for p in paths}
    assert want <= have, sorted(want - have)
    for name in (
        "ctrstore.1",
        "ctrstore-ps.1",
        "ctrstore-images-ls.1",
        "ctrstore-inspect.1",
        "ctrstore-completion.1",
    ):
        assert name in have
    # A second name of a command is a link to its page, and the page is there.
    for page in man1.iterdir():
        text = page.read_text()
        if text.startswith(".so "):
            target = text.split()[1]
            assert (man1.parent / target).is_file(), (page.name, target)
            assert not (man1.parent / target).read_text().startswith(".so "), page.name
        else:
            assert text.startswith('.TH "'), page.name
            for section in (".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"):
                assert section in text, (page.name, section)
    assert (man1 / "ctrstore-image.1").read_text() == ".so man1/ctrstore-images.1\n"


def test_pages_say_what_help_says(man1: Path) -> None:
    ps = (man1 / "ctrstore-ps.1").read_text()
    assert ".SH OPTIONS" in ps and "\\-\\-format" in ps and "\\-\\-filter" in ps
    assert "docker ps" in ps
    assert '.TH "CTRSTORE\\-PS" "1" "2023-11-14"' in ps  # SOURCE_DATE_EPOCH
    top = (man1 / "ctrstore.1").read_text()
    assert ".SH COMMANDS" in top and "\\fBinspect\\fR" in top


@needs_groff
def test_pages_are_valid_roff(man1: Path) -> None:
    """groff, warning about everything (-ww), says nothing about any page."""
    problems = {}
    for page in sorted(man1.iterdir()):
        r = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", f"man1/{page.name}"],
            cwd=man1.parent,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if r.returncode != 0 or r.stderr:
            problems[page.name] = r.stderr
    assert problems == {}


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed (man-db)")
def test_man_shows_a_page(man1: Path) -> None:
    r = subprocess.run(
        ["man", "-l", str(man1 / "ctrstore-inspect.1")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"},
    )
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "NAME" in text and "ctrstore-inspect - " in text
    assert "--type" in text and "{{.State.Status}}" in text
