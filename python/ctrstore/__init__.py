"""ctrstore: containerd's image and container storage, daemonless, for Python.

The data's way (see docs/architecture.md)::

    registry -> content store -> apply -> snapshots -> mount -> runtime

Start with ``Client`` (``ctrstore.client``): it opens a store and pulls, pushes, unpacks,
runs and commits; ``Client.content``, ``.images``, ``.snapshotter()``, ``.containers`` and
``.leases`` are its stores, ``Client.gc`` and ``Client.check_store`` keep it tidy. The
everyday API is shaped after docker-py's (docs/python-api.md)::

    with Client() as client:
        client.pull("docker.io/library/busybox:latest")
        result = client.run("busybox", ["echo", "hello"], remove=True)  # result.stdout == b"hello\n"

Nothing is imported until it is used (PEP 562): ``import ctrstore`` alone loads no store, and
importing ``ctrstore.x`` (which runs this file first) costs only what ``x`` needs.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ctrstore._core import Digester, __version__, sha256_bytes, sha256_file
    from ctrstore.client import DEFAULT_NAMESPACE, Client
    from ctrstore.config import Config
    from ctrstore.content import Descriptor, Info, Status
    from ctrstore.errdefs import (
        Aborted,
        AlreadyExists,
        CtrstoreError,
        FailedPrecondition,
        Internal,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        Unauthenticated,
        Unavailable,
        Unimplemented,
        Unknown,
    )
    from ctrstore.metadata import ContentStore, GCResult, Image, ImageStore, Lease, LeaseManager, Namespace
    from ctrstore.plugin import Registration, SkipPlugin, register

_WHERE: dict[str, str] = {
    **dict.fromkeys(("Digester", "__version__", "sha256_bytes", "sha256_file"), "ctrstore._core"),
    **dict.fromkeys(("DEFAULT_NAMESPACE", "Client"), "ctrstore.client"),
    "Config": "ctrstore.config",
    **dict.fromkeys(("Descriptor", "Info", "Status"), "ctrstore.content"),
    **dict.fromkeys(
        ("ContentStore", "GCResult", "Image", "ImageStore", "Lease", "LeaseManager", "Namespace"),
        "ctrstore.metadata",
    ),
    **dict.fromkeys(("Registration", "SkipPlugin", "register"), "ctrstore.plugin"),
}
"""Where each name of ``__all__`` is defined (the others are the error classes of
``ctrstore.errdefs``); imported on first use."""

__all__ = [
    "DEFAULT_NAMESPACE",
    "Aborted",
    "AlreadyExists",
    "Client",
    "Config",
    "ContentStore",
    "CtrstoreError",
    "Descriptor",
    "Digester",
    "FailedPrecondition",
    "GCResult",
    "Image",
    "ImageStore",
    "Info",
    "Internal",
    "InvalidArgument",
    "Lease",
    "LeaseManager",
    "Namespace",
    "NotFound",
    "PermissionDenied",
    "Registration",
    "ResourceExhausted",
    "SkipPlugin",
    "Status",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "__version__",
    "register",
    "sha256_bytes",
    "sha256_file",
]


def __getattr__(name: str) -> typing.Any:
    """Import the module that defines ``name`` (one of ``__all__``) and keep the value."""
    if name not in __all__:
        raise AttributeError(f"module 'ctrstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE.get(name, "ctrstore.errdefs")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
