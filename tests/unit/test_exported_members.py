"""The package's public API: ``ctrstore.__all__`` names exactly what ``import ctrstore`` offers
(as httpx's ``tests/test_exported_members.py`` checks), each name importable, and each class or
function says truthfully where it is defined (``__module__`` names a ctrstore module that has
it under that name), so docs, pickling and reprs find it."""

from __future__ import annotations
import __future__

import importlib
import types

import ctrstore

DUNDERS = {"__version__"}
"""Dunder names that are part of the API."""


def test_all_lists_every_public_member() -> None:
    # ctrstore imports its names on first use (its __getattr__): take every one first, so that
    # what the module holds does not depend on which tests ran before.
    for name in ctrstore.__all__:
        getattr(ctrstore, name)
    public = {
        name
        for name, value in vars(ctrstore).items()
        if (not name.startswith("_") or name in DUNDERS)
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }
    assert len(ctrstore.__all__) == len(set(ctrstore.__all__)), "a name is listed twice"
    assert set(ctrstore.__all__) == public


def test_every_member_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from ctrstore import *", namespace)
    for name in ctrstore.__all__:
        assert namespace[name] is getattr(ctrstore, name)


def test_module_of_each_member_is_sane() -> None:
    for name in ctrstore.__all__:
        value = getattr(ctrstore, name)
        if not isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
            continue
        module = value.__module__
        assert module == "ctrstore" or module.startswith("ctrstore."), (name, module)
        assert getattr(importlib.import_module(module), value.__name__) is value, (name, module)
        assert value.__name__ == name, (name, value.__name__)
