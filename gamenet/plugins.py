"""
Finding a game's registrations in its plugin packages.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Iterable

from twisted.plugin import getPlugins

from .interfaces import IRegistration


class PluginError(Exception):
    """
    A plugin package or one of its modules could not be imported.
    """


def add_paths(paths: Iterable[str]) -> None:
    """
    Put directories at the front of C{sys.path}, once each.
    """
    for path in reversed(list(paths)):
        path = os.path.abspath(path)
        if path not in sys.path:
            sys.path.insert(0, path)


def discover(packages: Iterable[str]) -> list[IRegistration]:
    """
    Every registration in the modules of C{packages}, found with
    L{twisted.plugin.getPlugins}.

    Each module is imported first, so that a broken plugin module is an error
    naming it rather than a plugin silently missing.

    @raise PluginError: a package or module does not import.
    """
    found: list[IRegistration] = []
    for name in packages:
        try:
            package = importlib.import_module(name)
        except Exception as e:
            raise PluginError(f"plugin package {name}: {type(e).__name__}: {e}") from e
        if getattr(package, "__file__", None) is None:
            raise PluginError(f"plugin package {name} is a namespace package; "
                              "expected a package with an __init__.py, which twisted.plugin can search")
        for module in pkgutil.iter_modules(getattr(package, "__path__", []), name + "."):
            try:
                importlib.import_module(module.name)
            except Exception as e:
                raise PluginError(f"plugin module {module.name}: {type(e).__name__}: {e}") from e
        found.extend(getPlugins(IRegistration, package))
    return found
