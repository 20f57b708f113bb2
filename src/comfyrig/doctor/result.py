"""What one doctor check found: a closed set of statuses plus a table of how each shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["STATUSES", "CheckResult", "Status"]

# "skip": the check does not apply here, or what it needs is missing (said in the message).
Status = Literal["pass", "warn", "fail", "skip"]

# status -> (symbol, Rich style); the order is also the severity order.
STATUSES: dict[Status, tuple[str, str]] = {
    "pass": ("✓ pass", "green"),
    "skip": ("- skip", "dim"),
    "warn": ("! warn", "yellow"),
    "fail": ("✗ fail", "bold red"),
}


@dataclass(frozen=True)
class CheckResult:
    """``id`` is stable (for scripts); ``message`` says what was found, ``fix`` what to do."""

    id: str
    title: str
    status: Status
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"id": self.id, "status": self.status, "message": self.message, "fix": self.fix}
