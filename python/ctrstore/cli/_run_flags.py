"""What ``run`` and ``create`` flags mean, as nerdctl parses them: ``-v``, ``--mount`` and
``-e``, turned into :class:`ctrstore.oci.SpecOptions` parts. ``-v`` and ``--mount`` are
parsed in ``ctrstore.client.mounts``, which the Python API's ``run(volumes=...)`` uses too;
the API takes :class:`ctrstore.oci.SpecMount` values directly as well."""

from __future__ import annotations

__all__ = ["expand_env", "parse_mount", "parse_volume"]

import os

from ctrstore.client.mounts import parse_mount, parse_volume

# --------------------------------------------------------------------------------------------
# -e (the network flags are ctrstore.cli.network's)


def expand_env(items: tuple[str, ...] | list[str]) -> list[str]:
    """``-e KEY`` takes KEY from our environment (as docker does); ``-e KEY=V`` sets it."""
    out = []
    for e in items:
        if "=" in e:
            out.append(e)
        elif e in os.environ:
            out.append(f"{e}={os.environ[e]}")
    return out
