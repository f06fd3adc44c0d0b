"""``ctrstore gc``."""

from __future__ import annotations

import click

from ctrstore.cli._common import State, pass_state, printable


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@pass_state
def gc(st: State, dry_run: bool) -> None:
    """Remove what nothing references: blobs, ingests, records and snapshots.

    Kept: images, leases that have not expired (and whose owner process, for the leases a
    pull or unpack takes, is alive), containers, anything labelled containerd.io/gc.root, and
    everything those reference through containerd.io/gc.ref.* labels. There is no daemon to do
    this in the background; run it after removals. gc also repairs what a crash between the
    metadata database and a snapshotter's own database left (`ctrstore check` checks more).
    """
    result = st.client().gc(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for line in result.repaired:
        click.echo(f"{'would repair' if dry_run else 'repaired'}: {line}")
    for kind, items in sorted(result.records.items()):
        for item in items:
            click.echo(printable(f"{verb} {kind} record {item}"))
    for d in result.blobs:
        click.echo(f"{verb} blob {d}")
    for r in result.ingests:
        click.echo(f"{verb} ingest {r}")
    for sn, keys in sorted(result.snapshots.items()):
        for k in keys:
            click.echo(printable(f"{verb} snapshot {sn}/{k}"))
    for m in result.mounts:
        click.echo(printable(f"{'would unmount' if dry_run else 'unmounted'} {m} (its process is gone)"))
    if result.empty:
        click.echo("nothing to remove")
