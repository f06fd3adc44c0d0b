"""``ctrstore check``: the store's fsck (the logic is ``Client.check_store``)."""

from __future__ import annotations

import sys

import click

from ctrstore.cli._common import State, pass_state


@click.command("check")
@click.option("--verify", is_flag=True, help="Also hash every blob again (reads all of them).")
@click.option("--repair", is_flag=True, help="Fix what can be fixed, and say what was done.")
@pass_state
def check(st: State, verify: bool, repair: bool) -> None:
    """Check the store: do blobs, ingests, snapshots, leases and mounts agree with the records?

    \b
    Reconciled:
      blobs and ingests         with their records in meta.db (missing, stray, wrong size)
      snapshot directories      with the snapshotter's metadata.db and with meta.db
      mounted container roots   under STATE with the container records
      leases                    with their owner processes (a killed pull's lease)
      meta.db itself            integrity; missing or empty while the store holds data

    Without --repair nothing changes. With --repair, each problem is fixed where it can be,
    and each line says what was done. A lost or corrupt meta.db is rebuilt from the files:
    blobs, ingests and snapshots get records again, labelled ctrstore.io/recovered and kept
    from gc (containerd.io/gc.root) until you remove that label; image names and containers
    cannot be recovered. Exits 1 while anything is wrong.
    """
    report = st.client().check_store(verify=verify, repair=repair)
    for f in report.findings:
        if f.repaired:
            click.echo(f"repaired: {f.area}: {f.problem}: {f.repair}")
        else:
            click.echo(f"problem: {f.area}: {f.problem} (--repair: {f.repair})")
    if verify:
        click.echo(f"verified {report.verified} blobs")
    if report.ok:
        click.echo("store is consistent" if not report.findings else "store is consistent now")
        return
    sys.exit(1)
