"""Linux capabilities in the OCI spec: containerd's default set, every capability Linux
knows (by number, to read this process's own), and nerdctl's ``--cap-add``/``--cap-drop``
rules on top of the default set."""

from __future__ import annotations

__all__ = ["ALL_CAPS", "DEFAULT_CAPS", "capabilities", "current_capabilities"]

from collections.abc import Sequence

from ctrstore.errdefs import InvalidArgument

DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""containerd's ``defaultUnixCaps``, in its order."""

ALL_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Every capability Linux knows, indexed by its number (containerd's ``pkg/cap``)."""


def current_capabilities() -> list[str]:
    """The effective capabilities of this process (containerd's ``cap.Current``)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "CapEff":
                bits = int(value.strip(), 16)
                return [name for i, name in enumerate(ALL_CAPS) if bits >> i & 1]
    raise InvalidArgument("/proc/self/status has no CapEff line")


def _canonical_cap(name: str) -> str:
    cap = name.strip().upper()
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in ALL_CAPS:
        raise InvalidArgument(f"unknown capability {name!r}")
    return cap


def capabilities(cap_add: Sequence[str], cap_drop: Sequence[str]) -> list[str]:
    """nerdctl's ``generateCapOpts`` on containerd's default set."""
    add = [c.upper() for c in cap_add]
    drop = [c.upper() for c in cap_drop]
    caps = [] if "ALL" in drop else list(DEFAULT_CAPS)
    if "ALL" in add:
        caps = current_capabilities()
    else:
        for c in add:
            cap = _canonical_cap(c)
            if cap not in caps:
                caps.append(cap)
    if "ALL" not in drop:
        dropped = {_canonical_cap(c) for c in drop}
        caps = [c for c in caps if c not in dropped]
    return caps
