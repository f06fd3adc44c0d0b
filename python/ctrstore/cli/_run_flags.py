"""What ``run`` and ``create`` flags mean, as nerdctl parses them: ``-v``, ``--mount``, ``-e``
and ``--net``, turned into :class:`ctrstore.oci.SpecOptions` parts. ``-v`` and ``--mount``
are parsed in ``ctrstore.client.mounts``, which the Python API's ``run(volumes=...)`` uses
too; the API takes :class:`ctrstore.oci.SpecMount` values directly as well."""

from __future__ import annotations

__all__ = ["NETS", "expand_env", "net_mode", "parse_mount", "parse_volume"]

import os

import click

from ctrstore.client.mounts import parse_mount, parse_volume
from ctrstore.oci.spec import NetMode

# --------------------------------------------------------------------------------------------
# -e, --net


NETS: dict[str, NetMode] = {"host": "host", "none": "none", "private": "private", "bridge": "private"}
"""``--net`` values: nerdctl's ``bridge`` is a new namespace here (loopback only, for now)."""


def net_mode(net: str) -> NetMode:
    """The spec's network mode for ``--net NET``; a usage error for anything else."""
    if net not in NETS:
        raise click.BadParameter(f"{net!r}: use bridge (private), host or none", param_hint="--net")
    return NETS[net]


def expand_env(items: tuple[str, ...] | list[str]) -> list[str]:
    """``-e KEY`` takes KEY from our environment (as docker does); ``-e KEY=V`` sets it."""
    out = []
    for e in items:
        if "=" in e:
            out.append(e)
        elif e in os.environ:
            out.append(f"{e}={os.environ[e]}")
    return out
