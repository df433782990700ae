"""Old import paths of the LangChain layer, kept for one release (see CHANGELOG.md)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["moved"]


def moved(old: str, new: str, names: list[str], *,
          elsewhere: dict[str, str] | None = None) -> Any:
    """A module ``__getattr__`` that forwards ``names`` from ``new`` (or the module
    ``elsewhere`` names for them) with a DeprecationWarning."""
    homes = {**dict.fromkeys(names, new), **(elsewhere or {})}

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {home}.{name}; import it from {home} (the "
                      "old path goes away in 0.3)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)

    return __getattr__
