"""``io.containerd.content.v1.content``: the local content store."""

from __future__ import annotations

from ctrstore.content.local import LocalStore
from ctrstore.plugin import CONTENT, InitContext, Registration, register


def _init(ic: InitContext) -> LocalStore:
    return LocalStore(ic.root)


register(Registration(CONTENT, "content", _init))
