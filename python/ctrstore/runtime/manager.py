"""The runtime plugin's instance (``io.containerd.runtime.v2.task``): where bundles, their work
dirs and runc's state live, and each namespace's :class:`~ctrstore.runtime.tasks.Tasks`.

Every command initialises every plugin, and few of them run tasks: this module imports
nothing more until tasks are asked for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctrstore.runtime.bundle import Bundle
    from ctrstore.runtime.tasks import RuntimeConfig, Tasks

__all__ = ["TASK_PLUGIN", "TaskManager"]

TASK_PLUGIN = "io.containerd.runtime.v2.task"
"""The runtime plugin's URI: the name of its directory under root and under state."""


class TaskManager:
    """Where the runtime keeps things (containerd's ``core/runtime/v2`` TaskManager)."""

    def __init__(self, state: Path, root: Path, runc_root: Path) -> None:
        self.state = state
        """``<state>/io.containerd.runtime.v2.task``: the bundles, ``<namespace>/<id>``."""
        self.root = root
        """``<root>/io.containerd.runtime.v2.task``: the bundles' work dirs."""
        self.runc_root = runc_root
        """``<state>/runc``: runc's state, one dir per namespace."""

    def bundle(self, namespace: str, cid: str) -> Bundle:
        from ctrstore.runtime.bundle import Bundle

        return Bundle.of(self.state, self.root, namespace, cid)

    def tasks(self, namespace: str, config: RuntimeConfig) -> Tasks:
        """The tasks of ``namespace``; the runtime binary is ``config.runtime``, read at each
        use."""
        from ctrstore.runtime.tasks import Tasks

        return Tasks(self, namespace, config)
