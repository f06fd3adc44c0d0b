"""ctr's subcommand aliases: ``list`` for ``ls``, ``remove``/``del``/``delete`` for ``rm``
(``ctr images list``, ``ctr c del``). They resolve without being listed in ``--help``."""

from __future__ import annotations

import click

__all__ = ["ALIASES", "AliasGroup"]

ALIASES = {"list": "ls", "remove": "rm", "del": "rm", "delete": "rm"}


class AliasGroup(click.Group):
    """A command group that also answers to ctr's aliases of its ``ls`` and ``rm``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in ALIASES:
            cmd = super().get_command(ctx, ALIASES[cmd_name])
        return cmd
