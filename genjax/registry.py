"""Name -> object registries, so configs select components with a string."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """A mapping from names to components that fails loudly, listing the valid names."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(entry: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice.")
      self._entries[name] = entry
      return entry

    return decorator

  def get(self, name: str) -> T:
    if name not in self._entries:
      close = difflib.get_close_matches(name, self._entries, n=3)
      hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
      raise ValueError(
        f"Unknown {self.kind} {name!r}.{hint} Valid {self.kind} names: {', '.join(self.names())}."
      )
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
