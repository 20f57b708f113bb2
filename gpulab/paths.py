"""Where the lab finds things: relative to the repository, never a machine's absolute path."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKFLOWS = HERE / "workflows"
BUNDLE = REPO / "bundle"


def shared_data(name: str) -> Path | None:
    """A file of the team's shared data folder: ``shared/data/`` inside the checkout
    (as the device tool copies it) or beside it (``../shared/data/`` from the repo root)."""
    for candidate in (REPO / "shared" / "data" / name, REPO.parent / "shared" / "data" / name):
        if candidate.is_file():
            return candidate
    return None
