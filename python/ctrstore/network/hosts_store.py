"""Containers find each other by name: nerdctl's *hosts store*, with no daemon.

Every container attached to CNI networks is a *member* of each of its networks while it is
attached: its CNI id (``<namespace>-<id>``), name, host name and address(es) on that
network, with the path of its bundle's ``hosts`` file and that file's own text (the
*base*: localhost lines, ``--add-host`` lines, its own addresses, as
``ctrstore.network.etc`` writes them). The members of one network of one namespace are one
JSON file, ``<root>/<namespace>/<network>.json`` (``root``: ``hosts`` in the network
plugin's state dir, so a reboot empties it with the namespaces it described).

Whenever a member joins (at start, after its attachment, before ``runc create``) or leaves
(when it is detached: the shim at the final exit, ``rm``, ``rm -f``, ``start`` over a dead
task, ``gc``, ``check --repair``, the first command after a reboot), the ``hosts`` file of
every member of its networks is written again: its base, then one line per other member
of any of its networks (``IP<TAB>NAME [HOSTNAME]``, nerdctl's habit: every CNI network,
the default ``bridge`` too; docker does it only on user-defined networks, with a DNS
server). The file is rewritten *in place* (same inode): it is bind-mounted on the running
container's ``/etc/hosts``, and a bind mount keeps the file it was made with, so a new file
renamed over it would never be seen inside.

Several ctrstore processes (CLI commands, shims) may change the store at once: every change
holds ``flock`` on ``<root>/lock`` (one lock for the whole store: a change is a few small
files, and a container on two networks must never wait for two locks in opposite orders).

Only members of the same namespace see each other (nerdctl's store is per namespace too).
Rootless ``slirp4netns``/``pasta`` containers are never members: each has a network of its
own that no other container is on.
"""

from __future__ import annotations

__all__ = ["ROOT_NAME", "Member", "join", "leave", "prune", "render"]

import contextlib
import fcntl
import json
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ctrstore.errdefs import from_oserror

ROOT_NAME = "hosts"
"""The store's directory in the network plugin's state dir."""

VERSION = 1
MARK = "# ctrstore: the other containers on its networks\n"
"""Heads the lines of the other members in a container's ``hosts`` file."""


@dataclass
class Member:
    """One container attached to one network (one entry of a network's file)."""

    key: str
    """The container's CNI id, ``<namespace>-<id>``."""
    name: str
    hostname: str
    ips: list[str]
    hosts: str
    """Its bundle's ``hosts`` file (bind-mounted on its ``/etc/hosts``)."""
    base: str
    """That file's own text (without the other members' lines)."""
    record: str
    """Its network record: a member whose record is gone is no longer attached (:func:`prune`)."""

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["key"]
        return doc

    @classmethod
    def from_json(cls, key: str, obj: Any) -> Member | None:
        if not isinstance(obj, dict):
            return None
        try:
            return cls(
                key,
                str(obj["name"]),
                str(obj.get("hostname", "")),
                [str(ip) for ip in obj.get("ips", [])],
                str(obj["hosts"]),
                str(obj.get("base", "")),
                str(obj.get("record", "")),
            )
        except (KeyError, TypeError):
            return None


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise from_oserror(e, f"locking the hosts store {root}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _file(root: Path, namespace: str, network: str) -> Path:
    return root / urllib.parse.quote(namespace, safe="") / (urllib.parse.quote(network, safe="") + ".json")


def _load(path: Path) -> dict[str, Member]:
    """A network's members; a file that cannot be read counts as empty (it only ever holds
    what the next joins and leaves write again)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    found = doc.get("members") if isinstance(doc, dict) else None
    if not isinstance(found, dict):
        return {}
    out = {}
    for key, obj in found.items():
        m = Member.from_json(str(key), obj)
        if m is not None:
            out[m.key] = m
    return out


def _save(path: Path, members: dict[str, Member]) -> None:
    if not members:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    doc = {"version": VERSION, "members": {k: m.to_json() for k, m in sorted(members.items())}}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc))
        tmp.rename(path)
    except OSError as e:
        raise from_oserror(e, f"writing the hosts store {path}") from None


def _networks(root: Path, namespace: str) -> dict[str, dict[str, Member]]:
    """Every network file of ``namespace``: network name -> members."""
    d = root / urllib.parse.quote(namespace, safe="")
    out: dict[str, dict[str, Member]] = {}
    try:
        files = sorted(d.glob("*.json"))
    except OSError:
        return out
    for f in files:
        out[urllib.parse.unquote(f.name.removesuffix(".json"))] = _load(f)
    return out


def _find(key: str, nets: dict[str, dict[str, Member]]) -> Member | None:
    """Member ``key``'s entry (in the first of its networks), or None."""
    return next((ms[key] for ms in nets.values() if key in ms), None)


def render(key: str, nets: dict[str, dict[str, Member]]) -> str | None:
    """Member ``key``'s ``hosts`` text: its base, then a line for each other member of any
    of its networks (an address once: the first network's names win); None if it is no
    member."""
    own = _find(key, nets)
    if own is None:
        return None
    lines: dict[str, str] = {}
    for _, ms in sorted(nets.items()):
        if key not in ms:
            continue
        for other in sorted(ms.values(), key=lambda m: m.name):
            if other.key == key:
                continue
            names = [other.name] if other.name else []
            if other.hostname and other.hostname not in names:
                names.append(other.hostname)
            for ip in other.ips:
                if names and ip not in lines:
                    lines[ip] = f"{ip}\t{' '.join(names)}\n"
    text = own.base if own.base.endswith("\n") or not own.base else own.base + "\n"
    return text + (MARK + "".join(lines.values()) if lines else "")


def _rewrite(path: Path, text: str) -> None:
    """Write ``text`` over the file at ``path`` in place (the same inode, which a bind mount
    shows); a file that is gone (its bundle removed meanwhile) is left so. The new text is
    written before the old length is cut, so a reader never finds the file empty."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as e:
        raise from_oserror(e, f"updating {path}") from None
    try:
        data = text.encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError as e:
        raise from_oserror(e, f"updating {path}") from None
    finally:
        os.close(fd)


def _refresh(root: Path, namespace: str, keys: Sequence[str]) -> None:
    """Write the ``hosts`` file of members ``keys`` again (under the lock)."""
    nets = _networks(root, namespace)
    done = set()
    for key in keys:
        if key in done:
            continue
        done.add(key)
        own, text = _find(key, nets), render(key, nets)
        if own is not None and text is not None:
            _rewrite(Path(own.hosts), text)


def join(root: Path, namespace: str, member: Member, networks: dict[str, list[str]]) -> None:
    """Make ``member`` a member of ``networks`` (network name -> its addresses there), and
    write its ``hosts`` file and that of every other member of those networks."""
    with _locked(root):
        affected = [member.key]
        for net, ips in networks.items():
            path = _file(root, namespace, net)
            ms = _load(path)
            affected += [k for k in ms if k != member.key]
            ms[member.key] = replace(member, ips=list(ips))
            _save(path, ms)
        _refresh(root, namespace, affected)


def leave(root: Path, namespace: str, key: str) -> list[str]:
    """Remove member ``key`` from every network of ``namespace``, and write the ``hosts``
    file of the members that saw it; the networks it left."""
    with _locked(root):
        return _leave(root, namespace, {key})


def _leave(root: Path, namespace: str, keys: set[str]) -> list[str]:
    left = []
    affected: list[str] = []
    for net, ms in _networks(root, namespace).items():
        gone = keys & ms.keys()
        if not gone:
            continue
        for k in gone:
            del ms[k]
        left.append(net)
        affected += list(ms)
        _save(_file(root, namespace, net), ms)
    _refresh(root, namespace, affected)
    return left


def prune(root: Path, *, dry_run: bool = False) -> list[str]:
    """Remove the members whose network record is gone (a container no longer attached whose
    teardown could not read its record, or a crash between the two), and write the hosts files
    of those that saw them; the removed ``<namespace>/<key>`` (with ``dry_run``: those that
    would be)."""
    out: list[str] = []
    if not root.is_dir():
        return out
    with _locked(root):
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            namespace = urllib.parse.unquote(d.name)
            stale = {
                m.key
                for ms in _networks(root, namespace).values()
                for m in ms.values()
                if not m.record or not Path(m.record).exists()
            }
            if stale and not dry_run:
                _leave(root, namespace, stale)
            if stale:
                out += [f"{namespace}/{k}" for k in sorted(stale)]
    return out
