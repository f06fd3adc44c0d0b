"""Label rules, and every well-known label key (this is the one place they are spelled).

Labels are plain ``str -> str`` maps on content, images, snapshots, leases, namespaces and
containers. As in containerd, key and value together may not exceed 4096 bytes, and setting a
label to the empty string removes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ctrstore.errdefs import InvalidArgument

MAX_LABEL_SIZE = 4096

# Roots and references followed by garbage collection (see ctrstore.metadata.gc). A
# reference key may go on with ``.<x>`` or ``/<x>``; the snapshot ones name the snapshotter
# first (``containerd.io/gc.ref.snapshot.overlayfs``). The ``bref`` (back-reference) keys make
# the named object point at the labelled one.
GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
GC_FLAT = "containerd.io/gc.flat"
GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
GC_REF_IMAGE = "containerd.io/gc.ref.image"
GC_BREF_CONTENT = "containerd.io/gc.bref.content"
GC_BREF_SNAPSHOT = "containerd.io/gc.bref.snapshot."
GC_BREF_IMAGE = "containerd.io/gc.bref.image"
GC_BREF_CONTAINER = "containerd.io/gc.bref.container"

# Content.
UNCOMPRESSED = "containerd.io/uncompressed"
"""On a layer blob: the digest of its uncompressed tar (its diffID)."""
DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
"""``<prefix><registry host>`` on a pulled blob: the repositories it came from (push mounts)."""

# Namespaces.
NAMESPACE_SHAREABLE = "containerd.io/namespace.shareable"
"""``true``: other namespaces may reuse this namespace's blobs (the ``isolated`` policy)."""

# Snapshots.
SNAPSHOT_PREFIX = "containerd.io/snapshot/"
"""Labels under this prefix (and ``SNAPSHOT_REF``) are handed to the snapshotter itself."""
SNAPSHOT_REF = "containerd.io/snapshot.ref"
"""On an unpack's active snapshot: the chainID it will be committed as."""
SNAPSHOT_DIFF_ID = "containerd.io/snapshot/diff-id"
SNAPSHOT_PARENT_CHAIN_ID = "containerd.io/snapshot/parent-chain-id"
OVERLAY_UPPERDIR = "containerd.io/snapshot/overlay.upperdir"
"""The overlay snapshotter's upper dir of a snapshot, when its ``upperdir_label`` is on."""

# Containers.
CONTAINER_NAME = "nerdctl/name"
"""The container's name, as nerdctl records it (``--name``, else ``<image>-<id[:5]>``)."""
ANONYMOUS_VOLUMES = "nerdctl/anonymous-volumes"
"""On a container: the JSON list of the anonymous volumes made for it (``rm -v`` removes
them), as nerdctl records it."""
RESTART_POLICY = "containerd.io/restart.policy"
"""``--restart``: ``always``, ``on-failure[:N]``, ``unless-stopped`` (containerd's and nerdctl's
key; here the container's shim restarts it, see ctrstore.runtime.restart)."""
STOP_SIGNAL = "io.containerd.image.config.stop-signal"
"""The signal ``stop`` sends first: ``--stop-signal``, else the image's StopSignal (containerd's
``WithImageStopSignal``)."""
OPEN_STDIN = "ctrstore.io/open-stdin"
"""``true``: the container's stdin stays open for ``attach`` (``-i``, docker's OpenStdin)."""

# Volumes.
VOLUME_ANONYMOUS = "com.docker.volume.anonymous"
"""On a volume made for one container (``-v /path``, an image's ``Volumes``), as docker marks
them: ``volume prune`` without ``--all`` removes only these."""

# ctrstore's own.
LEASE_OWNER = "ctrstore.io/lease.owner"
"""The process a lease belongs to (``pid=…,start=…,boot=…,pidns=…``; ctrstore.metadata.leases)."""
RECOVERED = "ctrstore.io/recovered"
"""On a record ``check --repair`` rebuilt from the files: when."""
SERVE_LEASE = "ctrstore.io/serve"
"""On the leases ``ctrstore serve --push`` holds uploads with (ctrstore.server.registry)."""
NETWORK_EXTENSION = "ctrstore.io/network"
"""The extension (not a label: it may be longer than a label may) of a container's record
that holds its networking (``ctrstore.network.NetworkOptions`` as JSON)."""


def validate(labels: Mapping[str, str]) -> dict[str, str]:
    """Check sizes and drop empty values; returns a fresh dict."""
    out: dict[str, str] = {}
    for k, v in labels.items():
        if not k:
            raise InvalidArgument("label key must not be empty")
        if len(k.encode()) + len(v.encode()) > MAX_LABEL_SIZE:
            raise InvalidArgument(f"label {k!r}: key and value exceed {MAX_LABEL_SIZE} bytes")
        if v:
            out[k] = v
    return out


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["k=v", "k2="]`` from the command line into a mapping (``k2=`` removes k2)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"label {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def apply_update(current: Mapping[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    """Merge label changes; an empty value deletes the key."""
    merged = dict(current)
    for k, v in changes.items():
        if v:
            merged[k] = v
        else:
            merged.pop(k, None)
    return validate(merged)


def is_label_path(fieldpath: str) -> bool:
    return fieldpath == "labels" or fieldpath.startswith("labels.")


def update_by_fieldpaths(
    current: Mapping[str, str],
    labels: Mapping[str, str],
    fieldpaths: Sequence[str],
    what: str,
    *,
    others: str = "",
) -> dict[str, str]:
    """containerd's label update: no fieldpaths, or ``labels``, replaces them all with
    ``labels``; ``labels.<key>`` sets (or, with an empty or missing value, removes) one key.
    Any other fieldpath names a field that cannot change: InvalidArgument naming ``what`` (and,
    in ``others``, the fields besides labels that the caller handles itself)."""
    if not fieldpaths:
        return validate(labels)
    new = dict(current)
    for fp in fieldpaths:
        if fp == "labels":
            new = validate(labels)
        elif fp.startswith("labels."):
            key = fp[len("labels.") :]
            new = apply_update(new, {key: labels.get(key, "")})
        else:
            allowed = f"{others} and labels" if others else "labels"
            raise InvalidArgument(f"cannot update {fp!r} of {what}: only {allowed}")
    return new
