"""A tiny name -> constructor registry, the way timm's `register_model` works.

Each registry is one namespace (attention types, placement patterns, backbones, datasets).
Registration is a decorator, so adding a variant is one small function or class in one file.
"""

from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import choices_error

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: `@ATTENTION.register("se")`. Re-registering a name needs `replace=True`."""

        def add(obj: T) -> T:
            if name in self._entries and not replace:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise choices_error(self.kind, name, self.names()) from None

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def names(self) -> list[str]:
        return sorted(self._entries)

    def registered(self) -> list[tuple[str, T]]:
        """The entries in the order they were registered: the order their module gives them (a table's)."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def describe(self) -> dict[str, str]:
        """Name -> first docstring line, for `attnplace list`."""
        return {n: (self._entries[n].__doc__ or "").strip().partition("\n")[0] for n in self.names()}
