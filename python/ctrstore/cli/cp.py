"""``ctrstore cp``: files between a container and the host, as ``docker cp``."""

from __future__ import annotations

import sys

import click

from ctrstore.cli._common import State, pass_state
from ctrstore.errdefs import InvalidArgument


def _split(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` -> (container, path); a host path -> (None, path). As docker: a
    path starting with ``/`` or ``.`` is always the host's (``./a:b`` is a file named so)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


@click.command("cp", context_settings={"allow_interspersed_args": False})
@click.option("--archive", "-a", is_flag=True, help="Keep the owners (uid:gid) of what is copied in.")
@click.option("--follow-link", "-L", is_flag=True, help="Copy what a symlink SRC points at, not the link.")
@click.argument("src")
@click.argument("dest")
@pass_state
def cp(st: State, archive: bool, follow_link: bool, src: str, dest: str) -> None:
    """Copy files between a container (running or stopped) and the host.

    \b
      ctrstore cp CONTAINER:SRC_PATH DEST_PATH|-
      ctrstore cp SRC_PATH|- CONTAINER:DEST_PATH

    A directory is copied with everything in it; SRC_PATH ending in /. copies its contents.
    A DEST_PATH that is an existing directory receives SRC under its own name; one that does
    not exist is created. - is a tar stream: written to stdout, or read from stdin (then
    DEST_PATH must be a directory). Paths in the container are resolved inside it: its
    symlinks never lead out to the host. Files copied in belong to root unless -a.
    """
    s_ctr, s_path = _split(src)
    d_ctr, d_path = _split(dest)
    if (s_ctr is None) == (d_ctr is None):
        raise InvalidArgument(
            "copying between two containers or two host paths is not supported: "
            "one of SRC and DEST must be CONTAINER:PATH"
        )
    if not (s_path if s_ctr else d_path):
        raise InvalidArgument("give a path in the container after CONTAINER:")
    mgr = st.client().containers
    if s_ctr is not None:
        cid = mgr.resolve(s_ctr)
        if d_path == "-":
            mgr.copy_from(cid, s_path, sys.stdout.buffer, follow_link=follow_link)
            sys.stdout.buffer.flush()
        else:
            mgr.copy_from(cid, s_path, d_path, follow_link=follow_link)
        return
    assert d_ctr is not None
    cid = mgr.resolve(d_ctr)
    mgr.copy_to(cid, sys.stdin.buffer if s_path == "-" else s_path, d_path, archive=archive)
