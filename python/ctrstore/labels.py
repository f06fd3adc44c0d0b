"""Label rules and the well-known labels that drive garbage collection.

Labels are plain ``str -> str`` maps on content, images, snapshots, leases and namespaces. As
in containerd, key and value together may not exceed 4096 bytes, and setting a label to the
empty string removes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ctrstore.errdefs import InvalidArgument

MAX_LABEL_SIZE = 4096

# Roots and references followed by garbage collection (see ctrstore.metadata.gc).
GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
GC_FLAT = "containerd.io/gc.flat"
GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
GC_REF_IMAGE = "containerd.io/gc.ref.image"
UNCOMPRESSED = "containerd.io/uncompressed"
DISTRIBUTION_SOURCE = "containerd.io/distribution.source."


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
