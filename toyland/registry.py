"""A tiny name -> factory registry; every pluggable family (tasks, embodiments, experts, ...) uses one.

An entry can be declared lazily, by the module that registers it (``register_lazy``): the name is
listed at once and the module is imported on first lookup. A package's registry can so list every
member without importing them (no import cycle between a package and its registry, and no heavy
optional dependency imported just to list names).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> module that registers it when imported

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            self._lazy.pop(name, None)
            return obj

        return decorator

    def register_lazy(self, name: str, module: str) -> None:
        """Declares ``name`` as registered by importing ``module`` (done on the first ``get``)."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._lazy[name] = module

    def get(self, name: str) -> T:
        if name in self._lazy:
            module = self._lazy[name]
            importlib.import_module(module)
            if name not in self._items:
                raise RuntimeError(f"importing {module} did not register {self.kind} '{name}' as its declaration says")
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} '{name}'; valid names: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
