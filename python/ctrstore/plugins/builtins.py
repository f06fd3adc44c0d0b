"""The built-in plugins: importing this module registers them (imports only, as containerd's
``cmd/containerd/builtins``). Third-party plugins register through the ``ctrstore.plugins``
entry-point group; they are looked up when the config says ``external_plugins = true`` (the
lookup costs every command some 30 ms, so it is off by default)."""

from __future__ import annotations

from ctrstore.plugins import content, metadata, network, runtime, snapshots, volumes  # noqa: F401  (registration side effects)

_loaded = False


def load_external() -> list[str]:
    """Import plugins advertised under the ``ctrstore.plugins`` entry-point group, once."""
    from importlib.metadata import entry_points

    global _loaded
    if _loaded:
        return []
    _loaded = True
    names = []
    for ep in entry_points(group="ctrstore.plugins"):
        ep.load()
        names.append(ep.name)
    return names
