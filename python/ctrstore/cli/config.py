"""``ctrstore config default|dump``."""

from __future__ import annotations

import click

import ctrstore.plugins.builtins  # noqa: F401  (so every plugin's config table is known)
from ctrstore.cli._common import State, pass_state
from ctrstore.config import Config


@click.group("config")
def config() -> None:
    """Show configuration (config.toml, as containerd's)."""


@config.command("default")
def default() -> None:
    """Print the full default config, with every plugin's table."""
    click.echo(Config().to_toml(), nl=False)


@config.command("dump")
@pass_state
def dump(st: State) -> None:
    """Print the effective config: file, environment and flags merged over the defaults."""
    click.echo(st.config().to_toml(), nl=False)
