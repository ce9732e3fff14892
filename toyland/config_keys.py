"""One check for every config dict the package reads: unknown keys are named, never ignored."""

from __future__ import annotations

from collections.abc import Iterable


def reject_unknown_keys(keys: Iterable[str], valid: Iterable[str], where: str) -> None:
    """Raises ValueError naming the keys of ``keys`` that are not in ``valid``."""
    valid = set(valid)
    unknown = set(keys) - valid
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; valid keys: {sorted(valid)}")
