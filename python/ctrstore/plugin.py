"""The plugin registry, as containerd's: every store is a plugin with a type, an id, the types
it requires, a config dataclass and an init function.

A plugin's data lives in ``<root>/<type>.<id>`` (and ``<state>/<type>.<id>`` for runtime
state), so the on-disk layout and the ``[plugins."<type>.<id>"]`` config tables match
containerd's. Plugins register themselves at import (see ``ctrstore.plugins.builtins``); a
``PluginSet`` initialises them in dependency order. A plugin that raises ``SkipPlugin`` is
reported as skipped, one that fails as an error; neither stops the others, but anything that
requires a failed plugin fails too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ctrstore.errdefs import (
    AlreadyExists,
    CtrstoreError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    from_oserror,
)

__all__ = [
    "CONTENT",
    "METADATA",
    "RUNTIME",
    "SNAPSHOT",
    "VOLUME",
    "InitContext",
    "Plugin",
    "PluginSet",
    "Registration",
    "Registry",
    "SkipPlugin",
    "register",
    "registry",
]

# Plugin types (containerd's names, so config tables and directories match).
CONTENT = "io.containerd.content.v1"
METADATA = "io.containerd.metadata.v1"
SNAPSHOT = "io.containerd.snapshotter.v1"
RUNTIME = "io.containerd.runtime.v2"
VOLUME = "io.containerd.volume.v1"
"""ctrstore's own plugin type (containerd has none): named volumes (``ctrstore.volumes``)."""

T = TypeVar("T")


class SkipPlugin(Exception):
    """Raised by an init function when the plugin cannot run here (not an error)."""


@dataclass(frozen=True)
class Registration:
    type: str
    id: str
    init: Callable[[InitContext], object]
    requires: tuple[str, ...] = ()
    """Plugin types this one needs initialised first; ``"*"`` means every other plugin."""
    config: object | None = None
    """Default config: a dataclass instance whose fields are the plugin's TOML table."""

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


class Registry:
    """The list of known plugins. ``reset()`` is for tests."""

    def __init__(self) -> None:
        self._regs: dict[str, Registration] = {}

    def register(self, reg: Registration) -> None:
        if not reg.type or not reg.id:
            raise InvalidArgument(f"plugin registration needs a type and an id: {reg!r}")
        if reg.uri in self._regs:
            raise AlreadyExists(f"plugin {reg.uri} is registered twice")
        self._regs[reg.uri] = reg

    def reset(self) -> None:
        self._regs.clear()

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._regs.values())

    def graph(self, disabled: set[str] | frozenset[str] = frozenset()) -> list[Registration]:
        """Registrations in an order where each comes after what it requires."""
        regs = [r for r in self._regs.values() if r.uri not in disabled]
        ordered: list[Registration] = []
        state: dict[str, Literal["visiting", "done"]] = {}

        def visit(r: Registration, chain: list[str]) -> None:
            mark = state.get(r.uri)
            if mark == "done":
                return
            if mark == "visiting":
                raise FailedPrecondition(f"plugin dependency cycle: {' -> '.join([*chain, r.uri])}")
            state[r.uri] = "visiting"
            for dep in regs:
                if dep is not r and ("*" in r.requires or dep.type in r.requires):
                    if "*" in dep.requires:
                        continue  # two wildcard plugins do not depend on each other
                    visit(dep, [*chain, r.uri])
            state[r.uri] = "done"
            ordered.append(r)

        for r in regs:
            visit(r, [])
        return ordered


registry = Registry()


def register(reg: Registration) -> Registration:
    registry.register(reg)
    return reg


@dataclass
class InitContext:
    """What an init function gets: its directories, decoded config, and the plugins before it."""

    registration: Registration
    root: Path
    state: Path
    config: Any
    plugins: PluginSet
    platforms: list[str] = field(default_factory=list)

    def get_single(self, type_: str, cls: type[T] = object) -> T:  # type: ignore[assignment]
        return self.plugins.get_single(type_, cls)

    def get_by_type(self, type_: str) -> dict[str, object]:
        return self.plugins.get_by_type(type_)


@dataclass
class Plugin:
    registration: Registration
    status: Literal["ok", "skip", "error"]
    instance: object | None = None
    error: str | None = None
    platforms: list[str] = field(default_factory=list)
    exc: BaseException | None = None
    """The exception that failed the plugin (or the plugin it required)."""

    @property
    def uri(self) -> str:
        return self.registration.uri


def decode_config(default: object | None, table: dict[str, Any] | None, uri: str) -> object | None:
    """Overlay a ``[plugins."<uri>"]`` table onto a plugin's default config dataclass."""
    if default is None:
        if table:
            raise InvalidArgument(f'config [plugins."{uri}"]: this plugin takes no configuration')
        return None
    if not table:
        return dataclasses.replace(default)  # type: ignore[type-var]
    fields = {f.name: f for f in dataclasses.fields(default)}  # type: ignore[arg-type]
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise InvalidArgument(f'config [plugins."{uri}"]: unknown key {key!r} (known: {known})')
        want = type(getattr(default, key))
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise InvalidArgument(
                f'config [plugins."{uri}"]: {key} must be {want.__name__}, got {type(value).__name__}'
            )
    return dataclasses.replace(default, **table)  # type: ignore[type-var]


def _same_kind(exc: BaseException, message: str) -> Exception:
    from ctrstore.errdefs import CtrstoreError

    if isinstance(exc, CtrstoreError):
        out: CtrstoreError = type(exc)(message)
        out.errno, out.filename = exc.errno, exc.filename
    elif isinstance(exc, OSError) and exc.errno:
        out = type(from_oserror(exc, ""))(message)
        out.errno = exc.errno
        out.filename = exc.filename if isinstance(exc.filename, str) else None
    else:
        out = FailedPrecondition(message)
    out.__cause__ = exc
    return out


class PluginSet:
    """The initialised plugins of one store (root + state), in dependency order."""

    def __init__(
        self,
        root: Path,
        state: Path,
        tables: dict[str, dict[str, Any]],
        disabled: set[str] | frozenset[str] = frozenset(),
        reg: Registry | None = None,
    ) -> None:
        self.root = root
        self.state = state
        self._plugins: dict[str, Plugin] = {}
        self._disabled = set(disabled)
        reg = reg if reg is not None else registry
        for r in reg:
            if r.uri in self._disabled:
                self._plugins[r.uri] = Plugin(r, "skip", error="disabled in config")
        for r in reg.graph(self._disabled):
            self._plugins[r.uri] = self._init(r, tables.get(r.uri))

    def _init(self, r: Registration, table: dict[str, Any] | None) -> Plugin:
        for dep_type in r.requires:
            for p in self._plugins.values():
                if (dep_type == "*" or p.registration.type == dep_type) and p.status == "error":
                    return Plugin(r, "error", error=f"required plugin {p.uri} failed: {p.error}", exc=p.exc)
        try:
            cfg = decode_config(r.config, table, r.uri)
            ic = InitContext(r, self.root / r.uri, self.state / r.uri, cfg, self)
            instance = r.init(ic)
        except SkipPlugin as e:
            return Plugin(r, "skip", error=str(e) or "skipped")
        except Exception as e:
            return Plugin(r, "error", error=f"{type(e).__name__}: {e}" if not str(e) else str(e), exc=e)
        return Plugin(r, "ok", instance, platforms=ic.platforms)

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self._plugins.values())

    def get(self, uri: str) -> Plugin:
        try:
            return self._plugins[uri]
        except KeyError:
            raise NotFound(f"plugin {uri} is not registered") from None

    def get_by_type(self, type_: str) -> dict[str, object]:
        return {
            p.registration.id: p.instance
            for p in self._plugins.values()
            if p.registration.type == type_ and p.status == "ok"
        }

    def get_single(self, type_: str, cls: type[T] = object) -> T:  # type: ignore[assignment]
        found = [p for p in self._plugins.values() if p.registration.type == type_]
        ok = [p for p in found if p.status == "ok"]
        if len(ok) == 1:
            inst = ok[0].instance
            if not isinstance(inst, cls):
                raise FailedPrecondition(f"plugin {ok[0].uri} is not a {cls.__name__}")
            return inst
        if not found:
            raise NotFound(f"no plugin of type {type_}")
        if not ok:
            why = "; ".join(f"{p.uri}: {p.error}" for p in found)
            message = f"no working plugin of type {type_} ({why})"
            failed = [p for p in found if p.status == "error"]
            if len(failed) == 1 and failed[0].exc is not None:
                # One plugin failed: raise its error's own class (a full disk, a read-only root,
                # a corrupt database), so the caller sees what went wrong, not just "no plugin".
                raise _same_kind(failed[0].exc, message)
            raise FailedPrecondition(message)
        raise FailedPrecondition(f"several plugins of type {type_}; name one")
