"""Container networking with CNI, as nerdctl does it but with no daemon.

A container on a CNI network gets a network namespace of its own, bind-mounted on
``<bundle>/netns`` (the spec's namespace path) and attached to each of its networks by the
CNI plugins (``bridge``, ``host-local``, ``portmap``, ``firewall``, ``tuning``, ``loopback``
from ``containernetworking-plugins``) before ``runc create``; it is detached when its process
exits (by the shim), when it is removed, and by the cleanups after a killed shim, a crashed
``run`` or a reboot. Every container gets ``/etc/hosts``, ``/etc/hostname`` and
``/etc/resolv.conf`` written by ctrstore.

==========================  =====================================================================
:mod:`.options`             what a container asks for (``--network``, ``-p``, ``--ip``, ``--dns``...)
:mod:`.ports`               ``-p`` parsing, port mappings
:mod:`.conflist`            the networks: conflist files, the default network, ``network create``
:mod:`.cni`                 calling the plugins (ADD, DEL, CHECK of a conflist's chain)
:mod:`.netns`               a namespace bind-mounted on a file
:mod:`.attach`              set up and tear down one container's attachments, from its record
:mod:`.etc`                 the hosts, hostname and resolv.conf files
:mod:`.hosts_store`         containers find each other by name (nerdctl's hosts store)
:mod:`.iptables`            the few rules ctrstore removes itself
:mod:`.manager`             the network plugin's instance: all of the above for the client
==========================  =====================================================================
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ctrstore.network.options import HOST_GATEWAY, NetworkOptions, parse_add_host
    from ctrstore.network.ports import PortMapping, format_ports, parse_private_port, parse_publish

_WHERE = {
    **dict.fromkeys(("HOST_GATEWAY", "NetworkOptions", "parse_add_host"), "ctrstore.network.options"),
    **dict.fromkeys(
        ("PortMapping", "format_ports", "parse_private_port", "parse_publish"), "ctrstore.network.ports"
    ),
}
"""Where each name of ``__all__`` is defined; imported on first use (every command initialises
the network plugin, and most need none of this), as ``ctrstore/__init__.py`` does."""

__all__ = [
    "HOST_GATEWAY",
    "NetworkOptions",
    "PortMapping",
    "format_ports",
    "parse_add_host",
    "parse_private_port",
    "parse_publish",
]


def __getattr__(name: str) -> typing.Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ctrstore.network' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
