"""``ctrstore unshare CMD...``: run a command in the user's namespace (podman unshare)."""

from __future__ import annotations

import os

import click

from ctrstore.cli._common import State


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def unshare(st: State, command: tuple[str, ...]) -> None:
    """Run COMMAND (default: $SHELL) as uid 0 in the user namespace and mount namespace that
    ctrstore uses for an ordinary user: there the image's files show their ids as the image
    has them (uid 0 is you, 1..N your subordinate ids in /etc/subuid), and the store's mounts
    are visible.

    \b
      ctrstore unshare id -u                  # 0
      ctrstore unshare ls -ln ~/.local/share/ctrstore
      ctrstore unshare python3 script.py      # the Python API, rootless

    As root, COMMAND runs as it is (root needs no namespace).
    """
    if not command:
        command = (os.environ.get("SHELL") or "/bin/sh",)
    st.enter_userns()
    try:
        os.execvp(command[0], list(command))
    except OSError as e:
        raise click.ClickException(f"{command[0]}: {e.strerror}") from None
