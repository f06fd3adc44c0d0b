"""``io.containerd.volume.v1.local``: named volumes, their data under the plugin's root
(``volumes/<namespace>/<name>/_data``), their records in meta.db."""

from __future__ import annotations

from ctrstore.metadata import Metadata
from ctrstore.plugin import METADATA, VOLUME, InitContext, Registration, register
from ctrstore.volumes import LocalVolumes


def _init(ic: InitContext) -> LocalVolumes:
    return LocalVolumes(ic.root, ic.get_single(METADATA, Metadata).db)


register(Registration(VOLUME, "local", _init, requires=(METADATA,)))
