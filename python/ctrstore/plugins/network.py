"""``io.ctrstore.network.v1.cni``: container networking with CNI (``ctrstore.network``).

Its table in config.toml::

    [plugins."io.ctrstore.network.v1.cni"]
      bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]   # where the CNI plugins are (env CNI_PATH)
      conf_dir = "/etc/ctrstore/cni/net.d"         # the networks' conflists (env NETCONFPATH)
      ipam_dir = "/run/ctrstore/cni/networks"      # host-local's allocations, for new networks
      bridge = "ctrstore0"                         # the default network's bridge ...
      subnet = "10.4.0.0/24"                       # ... and subnet, when it is first written

``CNI_PATH`` (a colon-separated list) and ``NETCONFPATH`` in the environment override
``bin_dirs`` and ``conf_dir``, as they do for nerdctl and cnitool.

It requires the runtime plugin: containers' network records live in their work dirs under
its root. At init, if its state dir has no ``booted`` marker (a reboot emptied ``state``),
it tears down the records whose namespace is gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ctrstore.errdefs import InvalidArgument
from ctrstore.plugin import RUNTIME, InitContext, Registration, register

NETWORK = "io.ctrstore.network.v1"


@dataclass
class NetworkConfig:
    bin_dirs: list[str] = field(default_factory=lambda: ["/usr/lib/cni", "/opt/cni/bin"])
    """Directories the CNI plugins are looked for in, in order (env ``CNI_PATH`` overrides)."""
    conf_dir: str = "/etc/ctrstore/cni/net.d"
    """The networks' conflist files (env ``NETCONFPATH`` overrides)."""
    ipam_dir: str = "/run/ctrstore/cni/networks"
    """host-local's ``dataDir`` in the networks ctrstore writes: on /run, a reboot frees them."""
    bridge: str = "ctrstore0"
    """The default network's bridge, when ctrstore first writes it."""
    subnet: str = "10.4.0.0/24"
    """The default network's subnet, when ctrstore first writes it."""


def _init(ic: InitContext) -> object:
    from ctrstore.network.manager import NetworkManager
    from ctrstore.runtime.manager import TaskManager

    cfg: NetworkConfig = ic.config
    if not all(isinstance(d, str) for d in cfg.bin_dirs):
        raise InvalidArgument("bin_dirs must be a list of directories")
    bin_dirs = [d for d in os.environ.get("CNI_PATH", "").split(os.pathsep) if d] or cfg.bin_dirs
    tasks = ic.get_single(RUNTIME, TaskManager)
    mgr = NetworkManager(
        bin_dirs=bin_dirs,
        conf_dir=os.environ.get("NETCONFPATH") or cfg.conf_dir,
        ipam_dir=cfg.ipam_dir,
        bridge=cfg.bridge,
        subnet=cfg.subnet,
        records_root=tasks.root,
        state=ic.state,
    )
    mgr.after_boot()
    return mgr


register(Registration(NETWORK, "cni", _init, requires=(RUNTIME,), config=NetworkConfig()))
