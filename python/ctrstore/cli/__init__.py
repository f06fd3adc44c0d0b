"""The ``ctrstore`` command line: a thin layer over the Python API, shaped like ``ctr``.

Each noun has its own module (``content.py``, ``namespaces.py``, ...), as containerd's
``cmd/ctr/commands`` does.
"""

from __future__ import annotations

import sys

import click

from ctrstore import __version__
from ctrstore.cli._common import State
from ctrstore.errdefs import CtrstoreError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.option(
    "--config",
    "-c",
    "config_path",
    metavar="FILE",
    envvar="CTRSTORE_CONFIG",
    help="Config file (default: /etc/ctrstore/config.toml when it exists). Env: CTRSTORE_CONFIG.",
)
@click.option(
    "--root",
    metavar="DIR",
    envvar="CTRSTORE_ROOT",
    help="Persistent data directory (default /var/lib/ctrstore). Env: CTRSTORE_ROOT.",
)
@click.option(
    "--state",
    metavar="DIR",
    envvar="CTRSTORE_STATE",
    help="Runtime state directory (default /run/ctrstore). Env: CTRSTORE_STATE.",
)
@click.option(
    "--namespace",
    "-n",
    metavar="NAME",
    envvar="CTRSTORE_NAMESPACE",
    help='Namespace to work in (default "default"). Env: CTRSTORE_NAMESPACE.',
)
@click.version_option(__version__, "--version", "-v", prog_name="ctrstore")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, root: str | None, state: str | None, namespace: str | None
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
      ctrstore gc --dry-run                    what garbage collection would remove
      ctrstore plugin ls                       what works on this machine
    """
    st = State(config_path, root, state, namespace)
    ctx.obj = st
    ctx.call_on_close(st.close)


def _register() -> None:
    from ctrstore.cli import (
        config,
        containers,
        content,
        gc,
        images,
        leases,
        namespaces,
        plugins,
        snapshots,
        transfer,
    )

    for mod in (config, containers, content, gc, images, leases, namespaces, plugins, snapshots, transfer):
        mod.register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: errdefs errors become one line on stderr and exit status 1."""
    try:
        cli.main(args=argv, prog_name="ctrstore", standalone_mode=False)
    except CtrstoreError as e:
        click.echo(f"ctrstore: {e.kind}: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("ctrstore: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(141)
