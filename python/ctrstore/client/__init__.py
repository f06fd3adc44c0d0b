"""The client layer, as containerd's ``client`` package: a ``Client`` opens one store (a root
and a state directory) in one namespace, and orchestrates what needs several of its roles at
once — ``pull``, ``push``, ``containers`` (create, start, delete), ``commit``, ``archive``
(import and export). The layers below (``ctrstore.images``, ``ctrstore.unpack``,
``ctrstore.runtime``, ``ctrstore.oci``) take roles (a content store, an image store, a
snapshotter), never the Client; see docs/architecture.md, "Layers of the code".

The everyday Python API (docs/python-api.md) hands out the objects of ``objects``
(``Container``, ``ImageView``, ``RunResult``, ``ExecResult``, ...) through the collections of
``api`` (``client.containers``, ``client.images``); ``client.prune()`` and ``client.df()``
give ``housekeeping``'s results (``SystemPruneReport``, ``DiskUsage``), as the CLI prints
them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctrstore.client.client import DEFAULT_NAMESPACE, Client, ImageCheck
    from ctrstore.client.housekeeping import DiskUsage, PruneReport, SystemPruneReport, UsageSummary
    from ctrstore.client.objects import Container, ContainerStatus, ExecResult, ImageView, RunResult
    from ctrstore.runtime.capture import Capture

__all__ = [
    "DEFAULT_NAMESPACE",
    "Capture",
    "Client",
    "Container",
    "ContainerStatus",
    "DiskUsage",
    "ExecResult",
    "ImageCheck",
    "ImageView",
    "PruneReport",
    "RunResult",
    "SystemPruneReport",
    "UsageSummary",
]

# Where each name lives: imported on first use, so that a submodule (``client.mounts``, which
# ``run``'s flags need) does not bring in the API's objects and housekeeping with it.
_WHERE = {
    "DEFAULT_NAMESPACE": "ctrstore.client.client",
    "Client": "ctrstore.client.client",
    "ImageCheck": "ctrstore.client.client",
    "DiskUsage": "ctrstore.client.housekeeping",
    "PruneReport": "ctrstore.client.housekeeping",
    "SystemPruneReport": "ctrstore.client.housekeeping",
    "UsageSummary": "ctrstore.client.housekeeping",
    "Container": "ctrstore.client.objects",
    "ContainerStatus": "ctrstore.client.objects",
    "ExecResult": "ctrstore.client.objects",
    "ImageView": "ctrstore.client.objects",
    "RunResult": "ctrstore.client.objects",
    "Capture": "ctrstore.runtime.capture",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` (one of ``__all__``) and keep the value."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'ctrstore.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
