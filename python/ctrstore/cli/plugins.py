"""``ctrstore plugin ls``."""

from __future__ import annotations

import click

from ctrstore.cli._common import State, pass_state
from ctrstore.cli._format import format_option, write_table


@click.group("plugin")
def plugin() -> None:
    """The plugins that make up the store, and whether each works here."""


@plugin.command("ls")
@click.option("--detailed", "-d", is_flag=True, help="Show each plugin's data directory and full error.")
@format_option
@pass_state
def ls(st: State, detailed: bool, fmt: str | None) -> None:
    """List plugins: TYPE, ID, PLATFORMS, STATUS (ok, skip or error, with the reason)."""
    from ctrstore.rootless.idmap import mode

    client = st.client()
    single = mode() == "single-id"
    rows = []
    for p in client.plugins:
        status = p.status if p.status == "ok" else f"{p.status}: {p.error}"
        note = getattr(p.instance, "status_note", None)  # e.g. overlayfs rootless: "userxattr"
        if p.status == "ok" and isinstance(note, str) and note:
            status = f"ok: {note}"
        if single and p.status == "ok" and p.registration.type == "io.containerd.snapshotter.v1":
            status += ("; " if status != "ok" else ": ") + "single id, owners in user.rootlesscontainers"
        row = [p.registration.type, p.registration.id, ",".join(p.platforms) or "-", status]
        if detailed:
            row.append(str(client.root / p.uri))
        rows.append(row)
    headers = ["TYPE", "ID", "PLATFORMS", "STATUS"]
    write_table([*headers, "ROOT"] if detailed else headers, rows, fmt)
