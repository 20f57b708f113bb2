"""The one check for numbers a person types: finite, in range, with a message naming the input.

Python's ``float()`` takes ``nan``, ``inf`` and ``1e999``; each of them turned a
timeout or a delay into a hang or a traceback somewhere deep in comfyrig. Every
numeric option and setting goes through :func:`check_number` (the CLI through
the Typer callbacks in ``cli/options.py``), so one rule decides them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Bounds", "check_number"]


@dataclass(frozen=True)
class Bounds:
    """What a number may be. ``above`` is an exclusive lower bound (``0``: "more than 0")."""

    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    unit: str = ""  # "seconds", "GiB", ... for the message

    def describe(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"more than {self.above:.12g}")
        if self.minimum is not None:
            parts.append(f"at least {self.minimum:.12g}")
        if self.maximum is not None:
            parts.append(f"at most {self.maximum:.12g}")
        what = f"a number of {self.unit}" if self.unit else "a number"
        return f"{what}, {' and '.join(parts)}" if parts else what


def check_number(value: float, name: str, bounds: Bounds) -> float:
    """``value`` itself when it is finite and within ``bounds``; raises ConfigError naming
    ``name`` (a flag or variable) and what it may be."""
    problem = None
    if isinstance(value, float) and not math.isfinite(value):
        problem = "is not a finite number"
    elif (bounds.above is not None and not value > bounds.above) or (bounds.minimum is not None and value < bounds.minimum):
        problem = "is too small"
    elif bounds.maximum is not None and value > bounds.maximum:
        problem = "is too large"
    if problem is not None:
        raise ConfigError(f"{name} {value:.12g} {problem}: give {bounds.describe()}.")
    return value
