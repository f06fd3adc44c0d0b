"""``io.containerd.runtime.v2.task``: the task manager (bundles under the plugin's state dir,
their work dirs under its root dir, runc's state under ``<state>/runc``)."""

from __future__ import annotations

from ctrstore.plugin import RUNTIME, InitContext, Registration, register
from ctrstore.plugins.snapshots import host_platform
from ctrstore.runtime.manager import TaskManager


def _init(ic: InitContext) -> TaskManager:
    ic.platforms.append(host_platform())
    return TaskManager(state=ic.state, root=ic.root, runc_root=ic.plugins.state / "runc")


register(Registration(RUNTIME, "task", _init))
