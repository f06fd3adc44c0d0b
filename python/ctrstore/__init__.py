"""ctrstore: containerd's image and container storage, daemonless, for Python.

The data's way (see docs/architecture.md)::

    registry -> content store -> apply -> snapshots -> mount -> runtime

What is here now: the content store (``Client.content``), meta.db with namespaces, images and
leases, garbage collection (``Client.gc``), config and the plugin registry.
"""

from __future__ import annotations

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
