"""Calling CNI plugins as the CNI specification (1.0.0) says a runtime does, with no library:
each plugin is a program found in the plugin directories, run with ``CNI_COMMAND``,
``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_ARGS`` and ``CNI_PATH`` in its
environment and its network configuration as JSON on stdin; it answers a result (ADD) or
nothing (DEL, CHECK) on stdout, or exits non-zero with a JSON error
(``{"code": N, "msg": ..., "details": ...}``).

A network configuration list (*conflist*) is a chain of plugins (``bridge``, ``portmap``,
``firewall``, ``tuning``): as libcni's ``AddNetworkList``, ADD runs them in order, each given
the previous one's result as ``prevResult``, and the last result is the attachment's; DEL
runs them in reverse, each given that result; CHECK runs them in order with it. Every plugin
gets ``name`` and ``cniVersion`` from the list, and ``runtimeConfig`` with the capabilities it
declares (``"capabilities": {"portMappings": true}``) that the runtime supplies.
"""

from __future__ import annotations

__all__ = ["CNIPlugins", "RuntimeConf", "plugin_error"]

import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrstore.errdefs import (
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unknown,
)

PLUGIN_TIMEOUT = 60.0
"""Seconds one plugin call may take (bridge waits up to a few seconds for a link to come up)."""

# CNI's well-known error codes (SPEC.md, "Error"), as errdefs classes.
_CODES: dict[int, type[CtrstoreError]] = {
    1: FailedPrecondition,  # incompatible CNI version
    2: InvalidArgument,  # unsupported field in network configuration
    3: NotFound,  # container unknown or does not exist
    4: InvalidArgument,  # invalid necessary environment variables
    5: Unknown,  # I/O failure
    6: InvalidArgument,  # failed to decode content
    7: InvalidArgument,  # invalid network config
    11: Unavailable,  # try again later
}


@dataclass(frozen=True)
class RuntimeConf:
    """What the runtime tells the plugins about one attachment (libcni's ``RuntimeConf``)."""

    container_id: str
    netns: str
    """The namespace's path; "" when it is gone (DEL then frees what lives outside it)."""
    ifname: str
    args: Sequence[tuple[str, str]] = ()
    """``CNI_ARGS`` pairs (``IgnoreUnknown=1;IP=10.4.0.9``)."""
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    """Capability arguments (``portMappings``): given to the plugins that declare them."""


def plugin_error(
    plugin: str, command: str, out: bytes, err: bytes, status: int, network: str = ""
) -> CtrstoreError:
    """The error a plugin answered, as the errdefs class of its CNI code (FailedPrecondition
    for a plugin's own failures, code 100 and up, and Unknown for 999 and anything else)."""
    msg = details = ""
    code = None
    try:
        doc = json.loads(out)
        if isinstance(doc, dict):
            code = doc.get("code")
            msg = str(doc.get("msg", ""))
            details = str(doc.get("details", ""))
    except ValueError:
        pass
    if not msg:
        msg = (err or out).decode(errors="replace").strip() or f"exit status {status}"
    text = msg + (f": {details}" if details and details not in msg else "")
    cls: type[CtrstoreError] = Unknown
    if isinstance(code, int):
        cls = _CODES.get(code, FailedPrecondition if 100 <= code < 999 else Unknown)
    where = f" (network {network})" if network else ""
    return cls(f"CNI plugin {plugin} {command}{where}: {' '.join(text.split())[:2000]}")


class CNIPlugins:
    """The plugins in ``bin_dirs`` (``CNI_PATH``), and the calls of a conflist's chain."""

    def __init__(self, bin_dirs: Sequence[str]) -> None:
        self.bin_dirs = [d for d in bin_dirs if d]

    def find(self, plugin: str) -> str:
        """The plugin's program; FailedPrecondition naming where it was looked for."""
        if not plugin or "/" in plugin or plugin in (".", ".."):
            raise InvalidArgument(f"invalid CNI plugin type {plugin!r}")
        for d in self.bin_dirs:
            path = Path(d) / plugin
            if os.access(path, os.X_OK) and path.is_file():
                return str(path)
        raise FailedPrecondition(
            f"CNI plugin {plugin!r} is not installed in {':'.join(self.bin_dirs) or '(no directory)'} "
            "(apt-get install containernetworking-plugins; or set bin_dirs of the "
            "io.ctrstore.network.v1.cni plugin, or CNI_PATH)"
        )

    def call(
        self, command: str, conf: Mapping[str, Any], rt: RuntimeConf, *, timeout: float = PLUGIN_TIMEOUT
    ) -> dict[str, Any] | None:
        """Run one plugin (``conf["type"]``) for ``command`` (ADD, DEL, CHECK, VERSION); its
        JSON answer (ADD, VERSION) or None."""
        plugin = str(conf.get("type", ""))
        program = self.find(plugin)
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": rt.container_id,
            "CNI_NETNS": rt.netns,
            "CNI_IFNAME": rt.ifname,
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in rt.args),
            "CNI_PATH": os.pathsep.join(self.bin_dirs),
        }
        try:
            r = subprocess.run(
                [program],
                input=json.dumps(conf).encode(),
                capture_output=True,
                env=env,
                timeout=timeout,
                cwd="/",
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"CNI plugin {plugin} {command}: no answer within {timeout:.0f}s") from None
        except OSError as e:
            raise FailedPrecondition(f"CNI plugin {plugin} {command}: cannot run {program}: {e}") from None
        if r.returncode != 0:
            raise plugin_error(plugin, command, r.stdout, r.stderr, r.returncode, str(conf.get("name", "")))
        if command not in ("ADD", "VERSION"):
            return None
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            raise Unknown(
                f"CNI plugin {plugin} {command}: its answer is not JSON: {r.stdout[:200]!r}"
            ) from None
        if not isinstance(doc, dict):
            raise Unknown(f"CNI plugin {plugin} {command}: its answer is not a JSON object")
        return doc

    # -- a conflist's chain ----------------------------------------------------------------
    @staticmethod
    def plugin_conf(
        conflist: Mapping[str, Any],
        plugin: Mapping[str, Any],
        rt: RuntimeConf,
        prev_result: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """What one plugin of the list reads on stdin (libcni's ``buildOneConfig``)."""
        conf = dict(plugin)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist.get("cniVersion", "1.0.0")
        caps = plugin.get("capabilities")
        if isinstance(caps, Mapping):
            runtime = {k: v for k, v in rt.capabilities.items() if caps.get(k)}
            if runtime:
                conf["runtimeConfig"] = runtime
        if prev_result is not None:
            conf["prevResult"] = prev_result
        return conf

    def add(
        self,
        conflist: Mapping[str, Any],
        rt: RuntimeConf,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """ADD every plugin of the list, in order; the final result. ``progress`` gets each
        plugin's result as it comes (what a DEL after a failure half-way needs). On a
        failure the caller DELs the whole list (as libcni leaves it to its caller)."""
        result: dict[str, Any] | None = None
        for plugin in _plugins(conflist):
            answer = self.call("ADD", self.plugin_conf(conflist, plugin, rt, result), rt)
            assert answer is not None
            result = answer
            if progress is not None:
                progress(result)
        if result is None:
            raise InvalidArgument(f"network {conflist.get('name')!r} has no plugins")
        return result

    def delete(self, conflist: Mapping[str, Any], rt: RuntimeConf, result: Mapping[str, Any] | None) -> None:
        """DEL every plugin of the list, in reverse order, each given ``result`` (the ADD's,
        if it is known). Every plugin is called even if one fails; the first error is raised."""
        first: CtrstoreError | None = None
        for plugin in reversed(_plugins(conflist)):
            try:
                self.call("DEL", self.plugin_conf(conflist, plugin, rt, result), rt)
            except CtrstoreError as e:
                first = first or e
        if first is not None:
            raise first

    def check(self, conflist: Mapping[str, Any], rt: RuntimeConf, result: Mapping[str, Any]) -> None:
        """CHECK every plugin of the list, in order, given the ADD's result."""
        for plugin in _plugins(conflist):
            try:
                self.call("CHECK", self.plugin_conf(conflist, plugin, rt, result), rt)
            except CtrstoreError as e:
                if (
                    plugin.get("type") == "portmap"
                    and "could not check ipv6 dnat" in str(e)
                    and not _has_ipv6(result)
                ):
                    # portmap before 1.2 (Debian's 1.1.1) checks the IPv6 rules of an IPv4-only
                    # container too, after its IPv4 ones passed; upstream checks its families only.
                    continue
                raise


def _has_ipv6(result: Mapping[str, Any]) -> bool:
    ips = result.get("ips")
    return isinstance(ips, list) and any(
        isinstance(i, Mapping) and ":" in str(i.get("address", "")) for i in ips
    )


def _plugins(conflist: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not all(isinstance(p, Mapping) for p in plugins):
        raise InvalidArgument(f"network {conflist.get('name')!r}: 'plugins' must be a list of objects")
    return plugins
