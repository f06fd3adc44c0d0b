"""Single-id mode and the id mapping a store was unpacked with (issue 13).

A user with no subordinate ids (or who asks: ``--single-id``, ``CTRSTORE_SINGLE_ID=1``) gets
a namespace that maps only 0 → the user (``userns``). Nothing can be chowned there: every
file of an image is the user's on disk, and its owner in the image is kept in the
``user.rootlesscontainers`` xattr, as umoci's rootless unpack does (the Rust applier and
diff writer, ``owner_xattr``). Processes of the image that run as another user than 0 cannot
run (there is no other id), so ``adapt_single_id`` refuses them before runc.

Snapshots keep the ownership they were unpacked with. ``<root>/rootless-idmap`` records the
namespace's uid and gid maps; when a command runs under another mapping (subids added, or
``--single-id`` dropped), ``check_store`` warns once that the snapshots unpacked before keep
the old ownership, and how to unpack again, then records the new mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ctrstore.errdefs import FailedPrecondition
from ctrstore.rootless import in_userns, maps_single_id, single_id, warn
from ctrstore.rootless.subids import SUBUID, missing_message

__all__ = [
    "IDMAP_FILE",
    "adapt_single_id",
    "check_process_user",
    "check_store",
    "mode",
    "single_id_warning",
]

IDMAP_FILE = "rootless-idmap"


def single_id_warning(user: str, asked: bool) -> str:
    """The warning printed when a single-id namespace is made."""
    why = "as asked (--single-id or CTRSTORE_SINGLE_ID)" if asked else missing_message(SUBUID, user)
    return (
        f"rootless: the store runs with a single id (0 -> you only): {why}. Files keep their "
        "image owners only in the user.rootlesscontainers xattr, and processes of an image that "
        "run as another user than root cannot run"
    )


def mode() -> str:
    """How this process maps ids: ``root``, ``subids`` or ``single-id``."""
    if not in_userns() and os.getuid() == 0:
        return "root"
    return "single-id" if single_id() else "subids"


def _current() -> str:
    out = []
    for f in ("uid_map", "gid_map"):
        try:
            lines = Path(f"/proc/self/{f}").read_text().splitlines()
        except OSError:
            lines = []
        out.append(f"{f}: " + "; ".join(" ".join(line.split()) for line in lines))
    return "\n".join(out) + "\n"


def _is_single(record: str) -> bool:
    first = record.splitlines()[0] if record else ""
    return maps_single_id(first.removeprefix("uid_map:"))


def check_store(root: str | os.PathLike[str]) -> None:
    """Record this namespace's id maps in ``root``; where another mapping was recorded, say
    once that what was unpacked before keeps its ownership."""
    if not in_userns():
        return
    path = Path(root) / IDMAP_FILE
    now = _current()
    try:
        before = path.read_text()
    except FileNotFoundError:
        before = None
    except OSError:
        return
    if before == now:
        return
    if before is not None:
        was = "a single id" if _is_single(before) else "subordinate ids"
        warn(
            f"rootless: this store was unpacked with {was} ({before.splitlines()[0]}) and now runs "
            f"with {'a single id' if single_id() else 'subordinate ids'}: the images and containers "
            "unpacked before keep the ownership they were unpacked with; to unpack them again, "
            "remove them and pull again (ctrstore rm -f $(ctrstore ps -aq); ctrstore system prune -a; "
            "ctrstore pull IMAGE)"
        )
    try:
        Path(root).mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f"{IDMAP_FILE}.tmp")
        tmp.write_text(now)
        tmp.replace(path)
    except OSError:
        pass  # a read-only store: the warning comes again next time, nothing else is lost


def check_process_user(uid: int, gid: int) -> None:
    """Single-id mode: refuse a container process (``run``, ``exec -u``) that is to run as
    another user or group than 0, before runc fails on it less clearly."""
    if (uid == 0 and gid == 0) or not single_id():
        return
    who = f"user {uid}" if uid else f"group {gid}"
    raise FailedPrecondition(
        f"{who} cannot run with a single id (this user namespace maps only 0 to you): add "
        "subordinate ids to /etc/subuid and /etc/subgid (as the warning made with the namespace "
        "says) and stop its pause process (kill $(cut -d' ' -f1 STATE/pause.pid), STATE as `ctrstore info` "
        "shows it), or run the container as root (-u 0)"
    )


def adapt_single_id(spec: dict[str, Any]) -> None:
    """Single-id mode: a container process can only run as 0:0 (there is no other id), and
    /dev/pts is mounted without ``gid=5`` (an unmapped group: the mount fails), as podman
    does. Supplementary groups are dropped: setgroups(2) is denied in this namespace (runc refuses
    additional groups there) and 0, the only group, is the process's own already."""
    if not single_id():
        return
    user = spec.get("process", {}).get("user") or {}
    check_process_user(int(user.get("uid", 0)), int(user.get("gid", 0)))
    user.pop("additionalGids", None)
    for m in spec.get("mounts", []):
        if m.get("type") == "devpts":
            m["options"] = [o for o in m.get("options", []) if not o.startswith("gid=")]
