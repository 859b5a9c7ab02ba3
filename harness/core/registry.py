"""One registry type for every plug-in point (scorers, steering methods).

Built-ins are declared as entry points in our own ``pyproject.toml``, exactly as a
third-party package would declare theirs, so there is one discovery mechanism. A spec
may also name a class by dotted path (``package.module:Name``) without installing
anything. Unknown names fail with the allowed names and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from harness.core.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, LookupError):
    """A name that resolves to nothing, with what would have worked."""


def closest(name: str, candidates: list[str]) -> str | None:
    """The most similar candidate, or None when nothing is close enough to suggest."""
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return matches[0] if matches else None


def import_dotted(path: str) -> object:
    """Import ``package.module:Name`` (or ``package.module.Name``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise RegistryError(f"'{path}' is not a dotted path; write it as 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import module '{module_name}' for '{path}': {exc}") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise RegistryError(f"module '{module_name}' has no attribute '{attr}'") from exc
    return obj


class Registry(Generic[T]):
    """Name -> class, filled from an entry-point group and explicit registrations."""

    def __init__(self, kind: str, group: str, check: Callable[[object], bool] | None = None):
        self.kind = kind
        self.group = group
        self._check = check
        self._explicit: dict[str, type[T]] = {}

    def register(self, name: str, cls: type[T]) -> type[T]:
        """Register a class under a name for this process (tests, notebooks)."""
        self._explicit[name] = cls
        return cls

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted(set(self._entry_points()) | set(self._explicit))

    def get(self, name: str) -> type[T]:
        """Resolve a registered name or a dotted path to a class."""
        if name in self._explicit:
            return self._explicit[name]
        eps = self._entry_points()
        obj: object
        if name in eps:
            obj = eps[name].load()
        elif ":" in name or ("." in name and name not in eps):
            obj = import_dotted(name)
        else:
            allowed = self.names()
            hint = closest(name, allowed)
            msg = f"unknown {self.kind} '{name}'; allowed: {', '.join(allowed)}"
            if hint:
                msg += f"; did you mean '{hint}'?"
            msg += " (or give a dotted path 'package.module:Name')"
            raise RegistryError(msg)
        if self._check is not None and not self._check(obj):
            raise RegistryError(f"'{name}' does not implement the {self.kind} protocol")
        return obj  # type: ignore[return-value]
