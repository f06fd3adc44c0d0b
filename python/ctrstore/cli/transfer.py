"""``pull``, ``push``, ``login`` and ``logout``: talking to registries."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ctrstore.cli._common import State, pass_state
from ctrstore.images.platforms import Platform

if TYPE_CHECKING:
    from ctrstore.cli._progress import ProgressView

_registry_options = [
    click.option(
        "--plain-http", is_flag=True, help="Talk HTTP, not HTTPS (localhost and 127.0.0.1 fall back to it)."
    ),
    click.option(
        "--hosts-dir",
        metavar="DIR",
        help="containerd-style certs.d directory with <host>/hosts.toml (default /etc/ctrstore/certs.d).",
    ),
]


def _with_registry_options(f: Callable[..., None]) -> Callable[..., None]:
    for opt in reversed(_registry_options):
        f = opt(f)
    return f


def _view(quiet: bool, plain: bool) -> ProgressView:
    from ctrstore.cli._progress import ProgressView

    return ProgressView("quiet" if quiet else ("plain" if plain else "auto"))


@click.command("pull")
@_with_registry_options
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Pull this platform (default: this machine's).")
@click.option("--all-platforms", is_flag=True, help="Pull every platform of a multi-platform image.")
@click.option("--snapshotter", metavar="NAME", help="Unpack with this snapshotter (default overlayfs).")
@click.option("--no-unpack", is_flag=True, help="Only fetch the blobs.")
@click.option("--max-concurrent-downloads", default=3, show_default=True, type=click.IntRange(1, 32))
@click.option("--quiet", "-q", is_flag=True, help="Print only the image name when done.")
@click.option("--plain", is_flag=True, help="Plain progress lines, even on a terminal.")
@click.argument("ref")
@pass_state
def pull(
    st: State,
    plain_http: bool,
    hosts_dir: str | None,
    platform: str | None,
    all_platforms: bool,
    snapshotter: str | None,
    no_unpack: bool,
    max_concurrent_downloads: int,
    quiet: bool,
    plain: bool,
    ref: str,
) -> None:
    """Pull image REF from its registry, verify every blob, and unpack it into snapshots.

    REF is normalised as docker does: redis:alpine is docker.io/library/redis:alpine. A second
    pull of the same image fetches nothing.

    Mirrors listed in the registry's hosts.toml (--hosts-dir), such as other nodes running
    'ctrstore serve', are asked first, in order, the registry last; a mirror that fails, even
    in the middle of a blob, hands over to the next host. The progress names the host each
    blob comes from ('downloading from HOST').
    """
    client = st.client()
    with _view(quiet, plain) as view:
        result = client.pull(
            ref,
            platform=Platform.parse(platform) if platform else None,
            all_platforms=all_platforms,
            unpack=not no_unpack,
            snapshotter=snapshotter,
            plain_http=plain_http,
            hosts_dir=hosts_dir,
            max_concurrent_downloads=max_concurrent_downloads,
            progress=view,
        )
    if quiet:
        click.echo(result.image.name)
    elif not result.fetched and result.unpacked is not None and not result.unpacked.applied:
        click.echo(f"{result.image.name}: up to date (nothing fetched or unpacked)")


@click.command("push")
@_with_registry_options
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--plain", is_flag=True, help="Plain progress lines, even on a terminal.")
@click.argument("name")
@click.argument("ref", required=False)
@pass_state
def push(
    st: State, plain_http: bool, hosts_dir: str | None, quiet: bool, plain: bool, name: str, ref: str | None
) -> None:
    """Push image NAME to its registry (or to REF): blobs first, then manifests, then the tag.
    NAME is an image as run takes it (alpine, an ID prefix...)."""
    client = st.client()
    name = client.images.lookup(name).name
    with _view(quiet, plain) as view:
        client.push(name, ref, plain_http=plain_http, hosts_dir=hosts_dir, progress=view)


@click.command("login")
@_with_registry_options
@click.option("--username", "-u", prompt=True, help="User name.")
@click.option("--password", "-p", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.argument("server")
def login(
    plain_http: bool,
    hosts_dir: str | None,
    username: str,
    password: str | None,
    password_stdin: bool,
    server: str,
) -> None:
    """Check credentials against registry SERVER and save them in ~/.docker/config.json."""
    from ctrstore.remotes import login as do_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif password is None:
        password = getpass.getpass("Password: ")
    key = do_login(server, username, password, hosts_dir=hosts_dir, plain_http=plain_http)
    click.echo(f"Login Succeeded ({key})")


@click.command("logout")
@click.argument("server")
def logout(server: str) -> None:
    """Forget the saved credentials of registry SERVER."""
    from ctrstore.remotes import logout as do_logout

    do_logout(server)
    click.echo(f"Removed login credentials for {server}")
