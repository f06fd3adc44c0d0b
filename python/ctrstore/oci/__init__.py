"""The OCI runtime spec of a container (``config.json``), as containerd's ``pkg/oci`` and
nerdctl make it: :mod:`~ctrstore.oci.spec` (defaults, image config, mounts, env, the spec
itself), :mod:`~ctrstore.oci.user` (the user, resolved in the image's own ``/etc/passwd``),
:mod:`~ctrstore.oci.caps` (capabilities) and :mod:`~ctrstore.oci.resources` (docker's run
flags: limits, ulimits, devices, ``/dev/shm``, ``--init``)."""

from __future__ import annotations

from ctrstore.oci.caps import ALL_CAPS, DEFAULT_CAPS, capabilities, current_capabilities
from ctrstore.oci.resources import DeviceMapping, Resources, Ulimit, find_init
from ctrstore.oci.spec import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_PATH_ENV,
    DEFAULT_READONLY_PATHS,
    OCI_VERSION,
    NetMode,
    SpecMount,
    SpecOptions,
    default_mounts,
    generate,
    host_devices,
    merge_env,
    validate_container_id,
)
from ctrstore.oci.user import MAX_ID, ResolvedUser, resolve_user

__all__ = [
    "ALL_CAPS",
    "DEFAULT_CAPS",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "MAX_ID",
    "DeviceMapping",
    "OCI_VERSION",
    "NetMode",
    "ResolvedUser",
    "Resources",
    "SpecMount",
    "SpecOptions",
    "Ulimit",
    "capabilities",
    "current_capabilities",
    "default_mounts",
    "find_init",
    "generate",
    "host_devices",
    "merge_env",
    "resolve_user",
    "validate_container_id",
]
