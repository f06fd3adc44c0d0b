"""``ctrstore serve``: the store as a registry (see ``ctrstore.server``)."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from ctrstore.cli._common import State, pass_state


@click.command("serve")
@click.option(
    "--addr",
    default="127.0.0.1:5000",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen ([::1]:PORT for IPv6; port 0 picks a free one). Anything but loopback "
    "needs --tls-cert/--tls-key with credentials, and credentials with --push.",
)
@click.option("--namespace", "-n", metavar="NAME", help="Serve this namespace (default: the global -n).")
@click.option(
    "--upstream",
    default="docker.io",
    show_default=True,
    metavar="HOST",
    help="Requests without ?ns= are answered from images named after this server (the Host the "
    "client used), then from images of HOST.",
)
@click.option(
    "--push",
    is_flag=True,
    help="Accept uploads: blobs verified into the content store, manifests named as images.",
)
@click.option(
    "--htpasswd", metavar="FILE", help="Require Basic auth: USER:HASH lines (bcrypt, `htpasswd -B`)."
)
@click.option(
    "--token-file",
    metavar="FILE",
    help="Accept `Authorization: Bearer TOKEN` for a TOKEN listed in FILE (one per line).",
)
@click.option("--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate (PEM; chain after it).")
@click.option("--tls-key", metavar="FILE", help="The certificate's private key (PEM).")
@click.option(
    "--access-log",
    metavar="FILE",
    help="Append the access log to FILE ('-': stdout; default: stderr).",
)
@click.option(
    "--max-connections",
    default=128,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Connections served at once.",
)
@pass_state
def serve(
    st: State,
    addr: str,
    namespace: str | None,
    upstream: str,
    push: bool,
    htpasswd: str | None,
    token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    access_log: str | None,
    max_connections: int,
) -> None:
    """Serve the images of one namespace over the OCI distribution API (as a registry).

    Clients pull with anything that speaks it: `ctr images pull`, `skopeo copy`, docker, or
    `ctrstore pull` from another node. Manifests, indexes and blobs come from the store's
    verified content (never a partial download); blobs with Range and HEAD, by sendfile.

    \b
    Names: an image named 127.0.0.1:5000/team/app:1 is served as repository team/app, tag 1,
    to a request with ?ns=127.0.0.1:5000 (containerd's mirror convention: point a hosts.toml
    [host."http://THIS:PORT"] entry of that registry here). Without ?ns=, the images named
    after this server (HOST:PORT as the client calls it) are served, then those of --upstream.

    \b
    Examples:
      ctrstore serve                                  # 127.0.0.1:5000, read-only
      ctrstore serve --addr 0.0.0.0:5443 --tls-cert c.pem --tls-key k.pem --htpasswd users
      ctrstore serve --push                           # a small registry of its own

    Stop it with Ctrl-C or SIGTERM: requests in flight finish first (up to 10 s).
    """
    from ctrstore.server import ServeOptions, make_server
    from ctrstore.server import serve as run
    from ctrstore.server.registry import Registry

    if namespace:
        st.namespace = namespace
    client = st.client()
    registry = Registry(
        client.content, client.images, client.leases if push else None, upstream=upstream, push=push
    )
    if not push and not registry.namespace_exists():
        from ctrstore.errdefs import NotFound

        raise NotFound(f"namespace {client.namespace!r} does not exist (see `ctrstore namespaces ls`)")
    log: TextIO | None
    opened: TextIO | None = None
    if access_log == "-":
        log = sys.stdout
    elif access_log:
        try:
            opened = log = open(access_log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            from ctrstore.errdefs import from_oserror

            raise from_oserror(e, access_log) from e
    else:
        log = sys.stderr
    try:
        server = make_server(
            registry,
            ServeOptions(addr, htpasswd, token_file, tls_cert, tls_key, max_connections),
            access_log=log,
            error_stream=sys.stderr,
        )
        mode = "read-write (--push)" if push else "read-only"
        auth = []
        if htpasswd:
            auth.append(f"htpasswd {htpasswd}")
        if token_file:
            auth.append(f"tokens from {token_file}")
        click.echo(
            f"ctrstore serve: namespace {client.namespace!r} of {client.root} on {server.url} "
            f"({mode}; {', '.join(auth) or 'no authentication'}; upstream {upstream})",
            err=True,
        )

        def stopped(why: str, cut: int) -> None:
            extra = f", {cut} request(s) cut short" if cut else ""
            click.echo(f"ctrstore serve: stopped ({why}{extra})", err=True)

        run(server, on_stop=stopped)
    finally:
        if opened is not None:
            opened.close()
