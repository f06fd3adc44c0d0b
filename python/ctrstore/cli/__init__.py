"""The ``ctrstore`` command line: a thin layer over the Python API, shaped like ``ctr``.

Each noun has its own module (``content.py``, ``namespaces.py``, ...), as containerd's
``cmd/ctr/commands`` does.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from ctrstore import __version__
from ctrstore.cli._common import State, printable
from ctrstore.cli._errors import DEBUG_ENV, debug_enabled, describe

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        cmd = getattr(importlib.import_module(where[0]), where[1])
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.option(
    "--config",
    "-c",
    "config_path",
    metavar="FILE",
    envvar="CTRSTORE_CONFIG",
    help=(
        "Config file (default: /etc/ctrstore/config.toml when it exists; a user's: "
        "~/.config/ctrstore/config.toml). Env: CTRSTORE_CONFIG."
    ),
)
@click.option(
    "--root",
    metavar="DIR",
    envvar="CTRSTORE_ROOT",
    help=(
        "Persistent data directory (default /var/lib/ctrstore; a user's: ~/.local/share/ctrstore). "
        "Env: CTRSTORE_ROOT."
    ),
)
@click.option(
    "--state",
    metavar="DIR",
    envvar="CTRSTORE_STATE",
    help=(
        "Runtime state directory (default /run/ctrstore; a user's: $XDG_RUNTIME_DIR/ctrstore). "
        "Env: CTRSTORE_STATE."
    ),
)
@click.option(
    "--namespace",
    "-n",
    metavar="NAME",
    envvar="CTRSTORE_NAMESPACE",
    help='Namespace to work in (default "default"). Env: CTRSTORE_NAMESPACE.',
)
@click.option(
    "--single-id",
    is_flag=True,
    envvar="CTRSTORE_SINGLE_ID",
    help=(
        "An ordinary user: map only your own id (0 in the namespace) even if you have subordinate "
        "ids; image owners are then kept in the user.rootlesscontainers xattr and only root "
        "processes can run (the mode a user without subids gets). Env: CTRSTORE_SINGLE_ID=1."
    ),
)
@click.option(
    "--debug",
    is_flag=True,
    help="Show the Python traceback of a failure (Env: CTRSTORE_DEBUG=1).",
)
@click.version_option(__version__, "--version", "-v", prog_name="ctrstore")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    root: str | None,
    state: str | None,
    namespace: str | None,
    single_id: bool,
    debug: bool,
) -> None:
    """ctrstore: containerd's image and container storage, with no daemon.

    Blobs live in ROOT/io.containerd.content.v1.content, references in
    ROOT/io.containerd.metadata.v1.sqlite/meta.db, unpacked layers in
    ROOT/io.containerd.snapshotter.v1.overlayfs/snapshots/N, running containers under
    STATE/io.containerd.runtime.v2.task. Every command opens the store itself; several
    ctrstore processes can use one root at once.

    \b
    Start here:
      ctrstore pull 127.0.0.1:5000/app:1       fetch, verify and unpack an image
      ctrstore run -d --name web IMAGE CMD...  run a container in the background
      ctrstore exec web sh                     run a command in it
      ctrstore ps -a; ctrstore rm -f web       list and remove containers
      ctrstore snapshots tree                  the unpacked layers
      ctrstore system df                       what the store takes on disk
      ctrstore system prune                    remove what is not used and free its space
      ctrstore plugin ls                       what works on this machine
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"
    st = State(config_path, root, state, namespace, single_id)
    ctx.obj = st
    rest = [*getattr(ctx, "protected_args", ()), *ctx.args]
    if ctx.invoked_subcommand not in NO_USERNS and not ({"-h", "--help"} & set(rest)):
        st.enter_userns()  # an ordinary user: into the user's namespace (rootless/userns.py)
    ctx.call_on_close(st.close)


NO_USERNS = frozenset({"completion", "config", "login", "logout", "version", "unshare", None})
"""Commands that work without the user namespace an ordinary user's commands enter (``unshare``
enters it itself, after its arguments are checked)."""


def _lazy(module: str, attr: str) -> tuple[str, str]:
    return (f"ctrstore.cli.{module}", attr)


# Command name -> where it is defined. Modules are imported only for the command that runs,
# which keeps start-up short (``--help`` imports them all, to show each one's summary).
COMMANDS: dict[str, tuple[str, str]] = {
    "attach": _lazy("lifecycle", "attach"),
    "c": _lazy("containers", "containers"),
    "check": _lazy("check", "check"),
    "commit": _lazy("containers", "commit"),
    "completion": _lazy("completion", "completion"),
    "config": _lazy("config", "config"),
    "container": _lazy("containers", "containers"),
    "containers": _lazy("containers", "containers"),
    "content": _lazy("content", "content"),
    "cp": _lazy("cp", "cp"),
    "create": _lazy("containers", "create"),
    "exec": _lazy("containers", "exec_"),
    "gc": _lazy("gc", "gc"),
    "i": _lazy("images", "images"),
    "image": _lazy("images", "images"),
    "images": _lazy("images", "images"),
    "info": _lazy("system", "info"),
    "inspect": _lazy("objects", "inspect"),
    "kill": _lazy("containers", "kill"),
    "leases": _lazy("leases", "leases"),
    "load": _lazy("archives", "load"),
    "login": _lazy("transfer", "login"),
    "logout": _lazy("transfer", "logout"),
    "logs": _lazy("containers", "logs"),
    "namespaces": _lazy("namespaces", "namespaces"),
    "network": _lazy("network", "network"),
    "ns": _lazy("namespaces", "namespaces"),
    "pause": _lazy("lifecycle", "pause"),
    "plugin": _lazy("plugins", "plugin"),
    "plugins": _lazy("plugins", "plugin"),
    "port": _lazy("network", "port"),
    "ps": _lazy("containers", "ps"),
    "pull": _lazy("transfer", "pull"),
    "push": _lazy("transfer", "push"),
    "rename": _lazy("lifecycle", "rename"),
    "restart": _lazy("lifecycle", "restart"),
    "rm": _lazy("containers", "rm"),
    "rmi": _lazy("images", "rm"),
    "run": _lazy("containers", "run"),
    "save": _lazy("archives", "save"),
    "serve": _lazy("serve", "serve"),
    "snapshot": _lazy("snapshots", "snapshots"),
    "snapshots": _lazy("snapshots", "snapshots"),
    "start": _lazy("containers", "start"),
    "stats": _lazy("stats", "stats"),
    "stop": _lazy("containers", "stop"),
    "system": _lazy("system", "system"),
    "t": _lazy("tasks", "tasks"),
    "tag": _lazy("images", "tag"),
    "task": _lazy("tasks", "tasks"),
    "tasks": _lazy("tasks", "tasks"),
    "top": _lazy("stats", "top"),
    "unpause": _lazy("lifecycle", "unpause"),
    "unshare": _lazy("unshare", "unshare"),
    "version": _lazy("system", "version"),
    "volume": _lazy("volumes", "volume"),
    "volumes": _lazy("volumes", "volume"),
    "wait": _lazy("containers", "wait"),
}


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a failure is one line on stderr and exit status 1 (with
    ``--debug`` or ``CTRSTORE_DEBUG=1``, the traceback too)."""
    if os.environ.get("_CTRSTORE_COMPLETE"):  # a shell asking for completions
        from ctrstore.cli.completion import register

        register()
    try:
        cli.main(args=argv, prog_name="ctrstore", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ctrstore: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("ctrstore: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as e:
        if debug_enabled():
            traceback.print_exc()
        click.echo(f"ctrstore: {printable(describe(e))}", err=True)
        sys.exit(1)
