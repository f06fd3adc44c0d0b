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
