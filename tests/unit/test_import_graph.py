"""The modules of ``python/ctrstore`` import one another without a cycle, and importing the
package (or a small part of it) loads no store.

The graph is built from the source with ``ast``, so it sees every import a module can run:
those at module level and those inside functions (an import moved into a function to dodge
a cycle is still a cycle). Imports under ``if TYPE_CHECKING:`` are left out: they never run.

Two kinds of edge:

- ``m -> t`` for each ``import t`` / ``from t import x`` in ``m`` (``t.x`` when ``x`` is a
  submodule). A package's ``__init__`` is the package's node, with everything it can import,
  its PEP 562 ``__getattr__`` included.
- ``m -> P[init]`` for each package ``P`` that encloses ``m``: importing ``m`` runs ``P``'s
  ``__init__`` first. ``P[init]`` has the imports that ``__init__`` runs at module level of
  modules outside ``P``. A package importing its own submodules is how it is put together
  (they run while it initialises, and need only the package object), so those do not count;
  an ``__init__`` that imports anything else is what ``test_import_ctrstore_loads_nothing``
  and ``test_platforms_load_no_metadata`` keep small.

Names looked up at run time (``importlib.import_module(variable)``: the CLI's lazy command
table, ``ctrstore.__getattr__``) are not seen.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ctrstore

PACKAGE = Path(ctrstore.__file__).parent
TIMEOUT = 60


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``), ``ctrstore._core`` from its stub."""
    out: dict[str, tuple[Path, bool]] = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    out["ctrstore._core"] = (PACKAGE / "_core.pyi", False)
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import under ``node`` that can run, and whether it is inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other, in_function)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inner)


def _targets(
    node: ast.Import | ast.ImportFrom, name: str, is_pkg: bool, modules: dict[str, tuple[Path, bool]]
) -> Iterator[str]:
    def owner(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    if isinstance(node, ast.Import):
        found = [owner(a.name) for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = name if is_pkg else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                pkg = pkg.rpartition(".")[0]
            base = f"{pkg}.{base}" if base else pkg
        found = [owner(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base) for a in node.names]
    yield from (t for t in found if t is not None and t != name)


def import_graph() -> dict[str, set[str]]:
    """The graph described in this module's docstring."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        edges = graph.setdefault(name, set())
        parent = name.rpartition(".")[0]
        while parent:
            edges.add(f"{parent}[init]")
            parent = parent.rpartition(".")[0]
        if path.suffix == ".pyi":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node, in_function in _walk(tree):
            for t in _targets(node, name, is_pkg, modules):
                edges.add(t)
                if is_pkg and not in_function and not t.startswith(f"{name}."):
                    graph.setdefault(f"{name}[init]", set()).add(t)
        if is_pkg:
            graph.setdefault(f"{name}[init]", set())
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (its nodes, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_sees_function_local_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    # client.client imports client.pull inside Client.pull only
    assert "ctrstore.client.pull" in graph["ctrstore.client.client"]
    # client.pull names client.client under TYPE_CHECKING only
    assert "ctrstore.client.client" not in graph["ctrstore.client.pull"]
    assert "ctrstore.metadata[init]" in graph["ctrstore.metadata.db"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def _loaded_by(statement: str) -> set[str]:
    """The ctrstore modules ``python -X importtime -c statement`` imports."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    names = {
        line.rpartition("|")[2].strip() for line in r.stderr.splitlines() if line.startswith("import time:")
    }
    return {n for n in names if n == "ctrstore" or n.startswith("ctrstore.")}


def test_import_ctrstore_loads_nothing() -> None:
    """``ctrstore/__init__`` runs before any ``ctrstore.x``: it imports nothing itself (PEP
    562), so no module pays for the stores it does not use."""
    assert _loaded_by("import ctrstore") == {"ctrstore"}


def test_platforms_load_no_metadata() -> None:
    loaded = _loaded_by("import ctrstore.images.platforms")
    assert not {m for m in loaded if m.startswith(("ctrstore.metadata", "ctrstore.client"))}, loaded


def test_lazy_names_resolve() -> None:
    for name in ctrstore.__all__:
        assert getattr(ctrstore, name) is not None, name
    assert set(ctrstore.__all__) <= set(dir(ctrstore))
    from ctrstore import Client
    from ctrstore.client import Client as ClientToo

    assert Client is ClientToo


CLI_MAY_IMPORT = {
    "ctrstore",  # __version__
    "ctrstore.client",
    "ctrstore.client.api",  # remove_command: what the shim runs for run -d --rm
    "ctrstore.client.containers",  # new_id_and_name
    "ctrstore.client.housekeeping",  # df, prune, rmi: the results the CLI prints
    "ctrstore.client.info",  # system info, version
    "ctrstore.client.mounts",  # -v and --mount: the grammar the API's volumes= uses too
    "ctrstore.client.dockercompat",  # docker's objects: ps, images, inspect
    # what the CLI parses and prints
    "ctrstore._timeutil",
    "ctrstore.config",
    "ctrstore.content.sniff",
    "ctrstore.errdefs",
    "ctrstore.images",  # read_json: images inspect prints the config
    "ctrstore.images.platforms",
    "ctrstore.images.pull",  # Status: pull progress
    "ctrstore.labels",
    "ctrstore.metadata.images",  # Image: images tag
    "ctrstore.mount",  # mount_command: snapshots mounts
    "ctrstore.network",  # NetworkOptions, -p and --add-host parsing: run and create flags, port
    "ctrstore.oci.spec",  # SpecOptions: run and create flags
    "ctrstore.oci.resources",  # Resources, Ulimit, DeviceMapping, find_init: run's limit flags
    "ctrstore.runtime.restart",  # RestartPolicy: run's --restart, checked as it is parsed
    "ctrstore.plugins.builtins",  # config default: every plugin's table
    "ctrstore.remotes",  # login, logout: no store involved
    "ctrstore.snapshots",  # Info: snapshots label
    # serve: the registry server is a front end of its own over the client's stores
    "ctrstore.server",
    "ctrstore.server.registry",
    "ctrstore.rootless.userns",  # enter: an ordinary user's commands run in the user namespace
    "ctrstore.rootless.idmap",  # the id mapping a store was unpacked with; plugin ls's note
}


def test_the_cli_reaches_the_store_only_through_the_client() -> None:
    graph = import_graph()

    def is_cli(m: str) -> bool:
        return m == "ctrstore.cli" or m.startswith("ctrstore.cli.")

    used = {
        t for m, ts in graph.items() if is_cli(m) for t in ts if not is_cli(t) and not t.endswith("[init]")
    }
    assert used <= CLI_MAY_IMPORT, f"the CLI imports {sorted(used - CLI_MAY_IMPORT)}"
