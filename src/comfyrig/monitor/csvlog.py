"""Recording the monitor to CSV: one row per GPU per tick, appended.

Columns: timestamp (ISO 8601, UTC), index, uuid, utilization_pct,
memory_used_mib, memory_total_mib, temperature_c, power_w. An N/A value is an
empty cell. The header is written when the file is new or empty; appending
to a CSV with other columns is refused rather than mixing two formats.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..files import MIB, check_output_file, read_text
from .snapshot import Snapshot

__all__ = ["COLUMNS", "CsvLog", "csv_rows", "read_csv"]

COLUMNS = (
    "timestamp",
    "index",
    "uuid",
    "utilization_pct",
    "memory_used_mib",
    "memory_total_mib",
    "temperature_c",
    "power_w",
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def csv_rows(snapshot: Snapshot) -> list[list[str]]:
    stamp = _iso(snapshot.time)
    return [
        [
            stamp,
            str(g.index),
            g.uuid,
            _cell(g.utilization_pct),
            _cell(g.memory_used_mib),
            _cell(g.memory_total_mib),
            _cell(g.temperature_c),
            _cell(g.power_w),
        ]
        for g in snapshot.gpus
    ]


class CsvLog:
    """An open CSV file; each ``write`` is flushed, so ``tail -f`` and a crash see every tick."""

    def __init__(self, path: Path) -> None:
        """Raises ConfigError when the file cannot be opened or has other columns."""
        self.path = check_output_file(path, "--csv")
        try:
            existing = path.read_text(encoding="utf-8").splitlines()[:1] if path.exists() else []
            if existing and existing[0].strip() != ",".join(COLUMNS):
                raise ConfigError(
                    f"--csv {path}: the file exists with other columns ({existing[0][:80]!r}).",
                    hint="Give a new file name; comfyrig appends only to its own monitor CSV files.",
                )
            self._file: IO[str] = path.open("a", encoding="utf-8", newline="")
        except OSError as exc:
            raise ConfigError(f"--csv {path}: cannot write there ({exc.strerror or exc}).") from exc
        self._writer = csv.writer(self._file, lineterminator="\n")
        if not existing:
            self._writer.writerow(COLUMNS)
            self._file.flush()

    def write(self, snapshot: Snapshot) -> None:
        self._writer.writerows(csv_rows(snapshot))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a recorded CSV; raises ConfigError when it is not one."""
    # Through the one reader: a FIFO or device given to --plot is refused, not waited on.
    reader = csv.DictReader(io.StringIO(read_text(path, "the CSV file", limit=1024 * MIB), newline=""))
    missing = [c for c in ("timestamp", "index", "utilization_pct", "memory_used_mib") if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"{path} is not a comfyrig monitor CSV: no {', '.join(missing)} column.",
            hint="Record one with 'comfyrig monitor --csv FILE'.",
        )
    rows = list(reader)
    if not rows:
        raise ConfigError(f"{path} holds no samples yet.")
    return rows
