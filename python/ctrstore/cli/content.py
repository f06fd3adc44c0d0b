"""``ctrstore content``: blobs and ingests, as ``ctr content``."""

from __future__ import annotations

import json
import sys
from typing import BinaryIO

import click

from ctrstore.cli._aliases import AliasGroup
from ctrstore.cli._common import State, ago, human_size, labels_text, pass_state, progress
from ctrstore.cli._format import format_option, write_table
from ctrstore.content.sniff import describe
from ctrstore.labels import parse_assignments


@click.group("content", cls=AliasGroup)
def content() -> None:
    """Content-addressed blobs: list, read, write, label, remove.

    Blobs are stored once under ROOT/io.containerd.content.v1.content/blobs/sha256 and
    recorded per namespace in meta.db. FILTERS use containerd's syntax, e.g.
    'labels."containerd.io/gc.root"' or 'digest~=^sha256:ab'; several FILTERS are OR'ed.
    """


@content.command("ls")
@click.option("--quiet", "-q", is_flag=True, help="Print only the digests.")
@click.option("--verbose", "-v", is_flag=True, help="Also show what each blob is (libmagic).")
@format_option
@click.argument("filters", nargs=-1)
@pass_state
def ls(st: State, quiet: bool, verbose: bool, fmt: str | None, filters: tuple[str, ...]) -> None:
    """List the blobs of the namespace, optionally matching FILTERS."""
    store = st.client().content
    infos = list(store.walk(*filters))
    if quiet:
        for i in infos:
            click.echo(i.digest)
        return
    headers = ["DIGEST", "SIZE", "AGE", "LABELS"]
    rows: list[list[object]] = []
    for i in infos:
        row: list[object] = [i.digest, human_size(i.size), ago(i.created_at), labels_text(i.labels)]
        if verbose:
            row.append(describe(store.backend.blob_path(i.digest))[1])
        rows.append(row)
    write_table([*headers, "TYPE"] if verbose else headers, rows, fmt)


@content.command("get")
@click.argument("digest")
@pass_state
def get(st: State, digest: str) -> None:
    """Write the blob DIGEST to stdout."""
    out = sys.stdout.buffer
    with st.client().content.open(digest) as f:
        while chunk := f.read(1 << 20):
            out.write(chunk)
    out.flush()


@content.command("info")
@click.argument("digest")
@pass_state
def info(st: State, digest: str) -> None:
    """Show a blob's size, times, labels, path and type as JSON."""
    store = st.client().content
    i = store.info(digest)
    path = store.path(digest)
    mime, desc = describe(path)
    click.echo(
        json.dumps(
            {
                "digest": i.digest,
                "size": i.size,
                "createdAt": i.created_at.isoformat(),
                "updatedAt": i.updated_at.isoformat(),
                "labels": i.labels,
                "path": path,
                "mediaType": mime,
                "description": desc,
            },
            indent=2,
        )
    )


@content.command("ingest")
@click.argument("ref")
@click.option("--expected-digest", metavar="DIGEST", help="Refuse to commit unless the data has this digest.")
@click.option(
    "--expected-size",
    type=click.IntRange(min=0),
    metavar="N",
    help="Refuse to commit unless exactly N bytes arrive.",
)
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Label the new blob.")
@click.option(
    "--progress/--no-progress",
    "show_progress",
    default=None,
    help="Show a progress bar (default: when stderr is a terminal).",
)
@pass_state
def ingest(
    st: State,
    ref: str,
    expected_digest: str | None,
    expected_size: int | None,
    labels: tuple[str, ...],
    show_progress: bool | None,
) -> None:
    """Store the data on stdin as a blob, under the ingest name REF.

    An interrupted ingest of the same REF resumes where it stopped (the bytes already stored
    are skipped on stdin when it is a file, read and dropped otherwise). On a size or digest
    mismatch nothing is committed. Prints the digest.
    """
    store = st.client().content
    source: BinaryIO = sys.stdin.buffer.raw  # type: ignore[union-attr]  # unbuffered: Rust reads the fd
    with progress(show_progress) as bar:
        task = bar.add_task(ref, total=expected_size)
        digest = store.ingest(
            ref,
            source,
            expected=expected_digest,
            size=expected_size,
            labels=parse_assignments(labels),
            progress=lambda n: bar.update(task, completed=n),
        )
    click.echo(digest)


@content.command("active")
@click.argument("filters", nargs=-1)
@format_option
@pass_state
def active(st: State, fmt: str | None, filters: tuple[str, ...]) -> None:
    """List ingests in progress (filter on `ref`)."""
    rows = [
        [
            s.ref,
            human_size(s.offset),
            "-" if s.total is None else human_size(s.total),
            ago(s.started_at),
            ago(s.updated_at),
        ]
        for s in st.client().content.list_statuses(*filters)
    ]
    write_table(["REF", "SIZE", "TOTAL", "STARTED", "UPDATED"], rows, fmt)


@content.command("abort")
@click.argument("refs", nargs=-1, required=True)
@pass_state
def abort(st: State, refs: tuple[str, ...]) -> None:
    """Drop ingests in progress."""
    store = st.client().content
    for ref in refs:
        store.abort(ref)
        click.echo(ref)


@content.command("rm")
@click.argument("digests", nargs=-1, required=True)
@pass_state
def rm(st: State, digests: tuple[str, ...]) -> None:
    """Remove blobs from the namespace (their bytes go once no namespace holds them)."""
    store = st.client().content
    for d in digests:
        store.delete(d)
        click.echo(d)


@content.command("label")
@click.argument("digest")
@click.argument("labels", nargs=-1)
@pass_state
def label(st: State, digest: str, labels: tuple[str, ...]) -> None:
    """Set labels KEY=VALUE on a blob; KEY= removes a label. Prints the resulting labels."""
    store = st.client().content
    i = store.set_labels(digest, parse_assignments(labels)) if labels else store.info(digest)
    click.echo(labels_text(i.labels))
