"""A container's attachments to its networks, set up before its task is created and torn
down after it ends — from a record that needs no configuration to undo.

Setting up (:func:`attach`), before ``runc create``:

1. a new network namespace is bind-mounted on ``<bundle>/netns`` (the spec's network
   namespace path);
2. the *record* (``network.json`` in the container's work dir, under ``root``: it outlives
   an emptied state dir) is written: the CNI container id, the namespace's path, the plugin
   directories and, per attachment (``lo``, then ``eth0``, ``eth1``, ...), the conflist as it
   is used, its ``CNI_ARGS`` and capability arguments (port mappings);
3. each attachment is ADDed (loopback first), and the record updated with each plugin's
   result as it comes (a failure half-way leaves what DEL needs).

Tearing down (:func:`detach`) reads only the record: every attachment is DELed in reverse
order with its result as ``prevResult`` and the recorded runtime config (so that ``portmap``
removes its DNAT chain, ``firewall`` its rules, ``host-local`` the address, ``bridge`` the
veth and its masquerade chain); if the namespace is gone already (a reboot), the bridge's
masquerade chain is removed by ctrstore, as the plugin removes it only when it finds the
interface. Then the namespace's *helper* is stopped (a process that serves it: rootless,
slirp4netns, ``ctrstore.rootless.slirp``; the record has its pid and start time), the
namespace unmounted and the record removed. A DEL that fails keeps the record (and the
namespace), so that the next cleanup tries again.

The shim tears down when the container's process exits; ``rm``, ``start``, ``gc``,
``check --repair`` and the first command after the state dir was emptied tear down what a
killed shim, a crashed ``run`` or a reboot left.
"""

from __future__ import annotations

__all__ = [
    "LOOPBACK_CONFLIST",
    "Attachment",
    "DamagedRecord",
    "Record",
    "addresses",
    "attach",
    "check",
    "detach",
    "stop_helper",
]

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrstore.errdefs import CtrstoreError, InvalidArgument, from_oserror
from ctrstore.network import hosts_store, iptables, netns
from ctrstore.network.cni import CNIPlugins, RuntimeConf
from ctrstore.network.ports import PortMapping
from ctrstore.runtime._proc import process_start_time

RECORD_VERSION = 1


class DamagedRecord(InvalidArgument):
    """A record that cannot be read (what it set up cannot be known)."""


LOOPBACK_CONFLIST: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "cni-loopback",
    "plugins": [{"type": "loopback"}],
}
"""Brings ``lo`` up in the new namespace (runc does it only for namespaces it makes)."""


@dataclass
class Attachment:
    """One interface of the container on one network."""

    network: str
    ifname: str
    conflist: dict[str, Any]
    args: list[tuple[str, str]] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "ifname": self.ifname,
            "conflist": self.conflist,
            "args": [list(a) for a in self.args],
            "capabilities": self.capabilities,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Attachment:
        if not isinstance(obj, dict):
            raise ValueError("attachment is not an object")
        args = obj.get("args") or []
        result = obj.get("result")
        if not isinstance(obj.get("conflist"), dict) or not isinstance(args, list):
            raise ValueError("attachment: bad conflist or args")
        if result is not None and not isinstance(result, dict):
            raise ValueError("attachment: bad result")
        return cls(
            str(obj["network"]),
            str(obj["ifname"]),
            obj["conflist"],
            [(str(k), str(v)) for k, v in args],
            dict(obj.get("capabilities") or {}),
            result,
        )


@dataclass
class Record:
    """What was set up for one container (``network.json``)."""

    container_id: str
    """The CNI container id: ``<namespace>-<id>``, as nerdctl's."""
    netns: str
    bin_dirs: list[str]
    attachments: list[Attachment] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)
    """The published ports as set up (free host ports chosen)."""
    helper: dict[str, Any] | None = None
    """A process that serves the namespace and is stopped with it (rootless: slirp4netns):
    ``{"name", "pid", "start"}`` (``start``: its start time, so a reused pid is not killed)."""
    hosts_store: dict[str, str] | None = None
    """Where the container is a member of the hosts store (``ctrstore.network.hosts_store``):
    ``{"root", "namespace"}``; the teardown removes it there first, whoever tears down."""

    def save(self, path: Path) -> None:
        doc = {
            "version": RECORD_VERSION,
            "container_id": self.container_id,
            "netns": self.netns,
            "bin_dirs": self.bin_dirs,
            "attachments": [a.to_json() for a in self.attachments],
            "ports": [p.to_json() for p in self.ports],
        }
        if self.helper is not None:
            doc["helper"] = self.helper
        if self.hosts_store is not None:
            doc["hosts_store"] = self.hosts_store
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(path)
        except OSError as e:
            raise from_oserror(e, f"writing network record {path}") from None

    @classmethod
    def load(cls, path: Path) -> Record | None:
        """The record at ``path``; None if there is none. A record that cannot be read is
        InvalidArgument naming it."""
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise from_oserror(e, f"reading network record {path}") from None
        except ValueError as e:
            raise DamagedRecord(f"network record {path} is not valid JSON: {e}") from None
        try:
            if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
                raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None!r}")
            return cls(
                str(doc["container_id"]),
                str(doc["netns"]),
                [str(d) for d in doc["bin_dirs"]],
                [Attachment.from_json(a) for a in doc["attachments"]],
                [PortMapping.from_json(p) for p in doc.get("ports", [])],
                _helper(doc.get("helper")),
                _hosts_store(doc.get("hosts_store")),
            )
        except (KeyError, TypeError, ValueError, CtrstoreError) as e:
            raise DamagedRecord(f"network record {path} is damaged: {e}") from None

    def networks(self) -> list[Attachment]:
        """The attachments to networks (not ``lo``)."""
        return [a for a in self.attachments if a.ifname != "lo"]


def _helper(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("pid"), int):
        raise ValueError("helper: not an object with a pid")
    return {"name": str(obj.get("name", "")), "pid": obj["pid"], "start": obj.get("start")}


def _hosts_store(obj: Any) -> dict[str, str] | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("root"), str):
        raise ValueError("hosts_store: not an object with a root")
    return {"root": obj["root"], "namespace": str(obj.get("namespace", ""))}


def helper_alive(helper: dict[str, Any]) -> bool:
    start = process_start_time(int(helper["pid"]))
    return start is not None and start == helper.get("start")


def stop_helper(helper: dict[str, Any], grace: float = 2.0) -> None:
    """SIGTERM the record's helper process (if it is still the same process), then SIGKILL it
    after ``grace`` seconds; returns once it is gone."""
    pid = int(helper["pid"])
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        if not helper_alive(helper):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and helper_alive(helper):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # (this process started it: reap it)
            time.sleep(0.02)


def addresses(result: dict[str, Any] | None) -> list[dict[str, str]]:
    """The container's addresses in a CNI result: ``{"address": "10.4.0.2/24", "ip":
    "10.4.0.2", "prefixlen": "24", "gateway": ..., "mac": ..., "interface": ...}``."""
    if not result:
        return []
    found = result.get("interfaces")
    ifaces: list[Any] = found if isinstance(found, list) else []
    out = []
    for ip in result.get("ips") or []:
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            continue
        addr = ip["address"]
        entry = {
            "address": addr,
            "ip": addr.split("/", 1)[0],
            "prefixlen": addr.split("/", 1)[1] if "/" in addr else "",
            "gateway": str(ip.get("gateway", "")),
            "mac": "",
            "interface": "",
        }
        idx = ip.get("interface")
        if isinstance(idx, int) and 0 <= idx < len(ifaces) and isinstance(ifaces[idx], dict):
            entry["mac"] = str(ifaces[idx].get("mac", ""))
            entry["interface"] = str(ifaces[idx].get("name", ""))
        out.append(entry)
    return out


def attach(
    record_path: Path,
    netns_path: Path,
    container_id: str,
    plugins: CNIPlugins,
    attachments: Sequence[Attachment],
    ports: Sequence[PortMapping] = (),
    hosts_store: dict[str, str] | None = None,
) -> Record:
    """Make the namespace and ADD ``attachments`` (after ``lo``); returns the record. On a
    failure everything done is torn down and the error raised. ``hosts_store``: where the
    caller will make it a member of the hosts store (recorded first, so that any teardown
    removes it there)."""
    record = Record(
        container_id,
        str(netns_path),
        list(plugins.bin_dirs),
        [Attachment("cni-loopback", "lo", dict(LOOPBACK_CONFLIST)), *attachments],
        list(ports),
        hosts_store=hosts_store,
    )
    with _locked(record_path, create=True):
        netns.create(netns_path)
        try:
            record.save(record_path)
            for att in record.attachments:
                rt = RuntimeConf(container_id, str(netns_path), att.ifname, att.args, att.capabilities)

                def progress(result: dict[str, Any], att: Attachment = att) -> None:
                    att.result = result
                    record.save(record_path)

                plugins.add(att.conflist, rt, progress=progress)
        except BaseException:
            with contextlib.suppress(Exception):
                _detach(record_path)
            if not record_path.exists():  # (else the next cleanup DELs what is left, then unmounts)
                with contextlib.suppress(Exception):
                    netns.remove(netns_path)
            raise
    return record


@contextlib.contextmanager
def _locked(record_path: Path, *, create: bool = False) -> Iterator[bool]:
    """Hold the lock of a container's networking (``flock`` on the record's directory): the
    shim, ``rm``, ``gc`` and a start never tear down or set up at the same time. Yields
    whether the directory exists (without it there is no record)."""
    d = record_path.parent
    if create:
        d.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    except OSError as e:
        raise from_oserror(e, f"locking {d}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)


def detach(record_path: Path) -> Record | None:
    """Tear down what the record at ``record_path`` says was set up, then remove it; the
    record, or None if there was none. Raises the first DEL error (the record stays)."""
    with _locked(record_path) as exists:
        return _detach(record_path) if exists else None


def _detach(record_path: Path) -> Record | None:
    record = Record.load(record_path)
    if record is None:
        return None
    if record.hosts_store is not None:  # first: the others stop finding it by name
        with contextlib.suppress(Exception):  # (what is left there, gc's prune removes)
            hosts_store.leave(
                Path(record.hosts_store["root"]), record.hosts_store["namespace"], record.container_id
            )
    ns_path = Path(record.netns)
    alive = netns.is_netns(ns_path)
    plugins = CNIPlugins(record.bin_dirs)
    first: CtrstoreError | None = None
    for att in reversed(record.attachments):
        rt = RuntimeConf(
            record.container_id, str(ns_path) if alive else "", att.ifname, att.args, att.capabilities
        )
        try:
            plugins.delete(att.conflist, rt, att.result)
        except CtrstoreError as e:
            first = first or e
            continue
        if not alive:
            _masquerade_leftovers(att, record.container_id)
    if first is not None:
        raise first
    if record.helper is not None:
        stop_helper(record.helper)
    netns.remove(ns_path)
    try:
        record_path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise from_oserror(e, f"removing network record {record_path}") from None
    return record


def check(record_path: Path) -> list[str]:
    """CNI CHECK of every attachment in the record (each plugin given its ADD's result): what
    is wrong, one line each (nothing: all is as the plugins set it up)."""
    problems: list[str] = []
    with _locked(record_path) as exists:
        record = Record.load(record_path) if exists else None
        if record is None:
            return problems
        if not netns.is_netns(Path(record.netns)):
            return [f"its network namespace {record.netns} is gone"]
        if record.helper is not None and not helper_alive(record.helper):
            problems.append(
                f"{record.helper.get('name') or 'its helper'} (pid {record.helper['pid']}) is not running"
            )
        plugins = CNIPlugins(record.bin_dirs)
        for att in record.attachments:
            if att.result is None:
                problems.append(f"{att.ifname} on network {att.network} was never set up")
                continue
            rt = RuntimeConf(record.container_id, record.netns, att.ifname, att.args, att.capabilities)
            try:
                plugins.check(att.conflist, rt, att.result)
            except CtrstoreError as e:
                problems.append(f"{att.ifname} on network {att.network}: {e}")
    return problems


def _masquerade_leftovers(att: Attachment, container_id: str) -> None:
    plugins = att.conflist.get("plugins")
    first = plugins[0] if isinstance(plugins, list) and plugins else {}
    if isinstance(first, dict) and first.get("type") == "bridge" and first.get("ipMasq"):
        ips = [a["address"] for a in addresses(att.result)]
        if ips:
            iptables.remove_masquerade(str(att.conflist.get("name", att.network)), container_id, ips)
