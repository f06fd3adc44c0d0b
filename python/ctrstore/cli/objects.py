"""Kinds of objects — containers, images, networks, volumes — for ``ctrstore inspect`` and
shell completion, in one registry.

``ctrstore inspect NAME...`` looks each name up as docker does: a container first, then an
image, a network, a volume (``--type`` picks one kind) and prints docker's JSON list (or each
object through ``--format``). A name found nowhere is an error after the others are printed.

Plugging a kind in
------------------
A command module defines an :class:`ObjectKind` and the registry names it by module and
attribute, so that nothing is imported until that kind is asked for::

    # ctrstore/cli/network.py
    NETWORK = ObjectKind(
        "network",
        inspect=lambda st, ref, size: docker_shaped_dict_or_raise_NotFound(st, ref),
        names=lambda st: [n.name for n in ...],      # what the shell completes
    )
    network.add_command(inspect_command("network"))   # ``ctrstore network inspect``

    # and here, in OBJECT_KINDS:
    "network": "ctrstore.cli.network:NETWORK",

``volume`` is ``ctrstore.cli.volumes:VOLUME``; ``network`` is registered already
(``ctrstore.cli.network:NETWORK``): until its module exists, it is skipped. Completing names:
``@click.argument("name", shell_complete=complete("network"))``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from click.shell_completion import CompletionItem

from ctrstore.cli._common import State, pass_state
from ctrstore.cli._format import inspect_format_option, write_inspect
from ctrstore.errdefs import CtrstoreError, InvalidArgument, NotFound

__all__ = [
    "OBJECT_KINDS",
    "ObjectKind",
    "complete",
    "inspect",
    "inspect_command",
    "kind",
    "lookup",
    "state_of",
]


@dataclass(frozen=True)
class ObjectKind:
    name: str
    inspect: Callable[[State, str, bool], dict[str, Any]]
    """``(state, name or id, size)`` -> docker's inspect object; NotFound if there is none.
    ``size``: ``--size`` was given (containers add ``SizeRw``/``SizeRootFs``)."""
    names: Callable[[State], list[str]]
    """The names a user may type, for shell completion."""


OBJECT_KINDS: dict[str, str] = {
    "container": "ctrstore.cli.containers:CONTAINER",
    "image": "ctrstore.cli.images:IMAGE",
    "network": "ctrstore.cli.network:NETWORK",
    "volume": "ctrstore.cli.volumes:VOLUME",
}
"""Kind -> ``module:attribute`` of its :class:`ObjectKind`, in the order ``inspect`` tries
them (docker's)."""


def kind(name: str) -> ObjectKind | None:
    """The registered kind, or None when its module is not there (yet)."""
    where = OBJECT_KINDS.get(name)
    if where is None:
        return None
    module, _, attr = where.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return None
        raise
    k = getattr(mod, attr, None)
    return k if isinstance(k, ObjectKind) else None


def _kinds(wanted: str | None) -> list[ObjectKind]:
    if wanted is not None:
        k = kind(wanted)
        if k is None:
            raise InvalidArgument(f"--type {wanted}: no such kind of object here")
        return [k]
    return [k for k in (kind(n) for n in OBJECT_KINDS) if k is not None]


def lookup(
    st: State, refs: Sequence[str], kinds: Sequence[ObjectKind], *, size: bool
) -> tuple[list[dict[str, Any]], CtrstoreError | None]:
    """Every name's object (from the first kind that has it), and the error for the names
    no kind has (NotFound naming them all, or the ambiguity one kind found)."""
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    ambiguous: InvalidArgument | None = None
    for ref in refs:
        for k in kinds:
            try:
                found.append(k.inspect(st, ref, size))
                break
            except NotFound:
                continue
            except InvalidArgument as e:  # an ambiguous prefix: another kind may still have it
                ambiguous = ambiguous or e
                continue
        else:
            missing.append(ref)
    if not missing:
        return found, None
    what = kinds[0].name if len(kinds) == 1 else "object"
    return found, ambiguous or NotFound(f"no such {what}: {', '.join(missing)}")


def _run_inspect(
    st: State, refs: Sequence[str], kinds: Sequence[ObjectKind], fmt: str | None, size: bool
) -> None:
    """Print what was found (docker's ``[]`` when nothing was), then fail for the rest."""
    found, err = lookup(st, refs, kinds, size=size)
    if found or fmt in (None, "", "json"):
        write_inspect(found, fmt)
    if err is not None:
        raise err


def inspect_command(kind_name: str, *, help: str | None = None) -> click.Command:
    """An ``inspect`` subcommand for one kind (``ctrstore container inspect``, ``image
    inspect``, ``network inspect``...)."""

    @click.command("inspect", help=help or f"Show {kind_name}s as docker's JSON (or through --format).")
    @inspect_format_option
    @click.option(
        "--size", "-s", is_flag=True, help="Add sizes: SizeRw and SizeRootFs (containers), Size (volumes)."
    )
    @click.argument("names", nargs=-1, required=True, shell_complete=complete(kind_name))
    @pass_state
    def cmd(st: State, fmt: str | None, size: bool, names: tuple[str, ...]) -> None:
        k = kind(kind_name)
        if k is None:
            raise InvalidArgument(f"{kind_name}s cannot be inspected here")
        _run_inspect(st, names, [k], fmt, size)

    return cmd


def state_of(ctx: click.Context) -> State:
    """The State of a command line being completed (the group's callback, which makes it,
    does not run while completing): from the root's parsed options."""
    root = ctx.find_root()
    if isinstance(root.obj, State):
        return root.obj
    p = root.params
    return State(p.get("config_path"), p.get("root"), p.get("state"), p.get("namespace"))


def complete(*kinds: str) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """A ``shell_complete`` callback giving the names of objects of ``kinds``. Completion
    never fails: a store that cannot be opened completes nothing."""

    def names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        st = state_of(ctx)
        out: list[str] = []
        try:
            for n in kinds:
                k = kind(n)
                if k is not None:
                    with contextlib.suppress(CtrstoreError, OSError):
                        out.extend(k.names(st))
        except Exception:
            return []
        finally:
            if st is not ctx.find_root().obj:
                with contextlib.suppress(Exception):
                    st.close()
        unique = dict.fromkeys(n for n in out if n.startswith(incomplete))
        return [CompletionItem(n) for n in unique]

    return names


@click.command("inspect")
@click.option(
    "--type",
    "type_",
    type=click.Choice(list(OBJECT_KINDS)),
    help="Only look for this kind of object.",
)
@inspect_format_option
@click.option("--size", "-s", is_flag=True, help="Add SizeRw and SizeRootFs to containers, Size to volumes.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete(*OBJECT_KINDS))
@pass_state
def inspect(st: State, type_: str | None, fmt: str | None, size: bool, names: tuple[str, ...]) -> None:
    """Show containers, images, networks or volumes as docker's JSON list.

    Each NAME is looked up as a container, then an image, a network, a volume (--type picks
    one). With --format, each object is printed through a Go template instead:

    \b
      ctrstore inspect -f '{{.State.Status}} {{.State.ExitCode}}' web
      ctrstore inspect --type image -f '{{json .Config.Env}}' busybox
      ctrstore inspect web | jq '.[0].Mounts'
    """
    _run_inspect(st, names, _kinds(type_), fmt, size)
