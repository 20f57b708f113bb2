"""What ``comfyrig config`` shows: every setting, its value and its source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.table import Table

    from ..config.settings import Sourced

__all__ = ["settings_json", "settings_table"]


def settings_json(rows: Mapping[str, Sourced[object]]) -> dict[str, Any]:
    return {"settings": {k: {"value": v.value, "source": v.source} for k, v in rows.items()}}


def settings_table(rows: Mapping[str, Sourced[object]]) -> Table:
    # Rich is imported here, not with the module: 'config --json' never needs it.
    from rich.table import Table

    table = Table(title="comfyrig settings", caption="precedence: cli > env > .env > default")
    table.add_column("name", style="cyan")
    table.add_column("value")
    table.add_column("source", style="dim")
    for name, value in rows.items():
        table.add_row(name, "" if value.value is None else str(value.value), value.source)
    return table
