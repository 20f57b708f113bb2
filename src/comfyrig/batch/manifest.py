"""DIR/manifest.jsonl: one line per done job, appended after the journal says done.

The journal is the truth; the manifest follows it. At start ``reconcile``
drops a torn last line (a run killed mid-write) and appends the lines of done
jobs that are missing (killed between the journal commit and the append), so
every done job has exactly one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import JournalError
from ..files import write_error
from .journal import JobRow, Journal

__all__ = ["Manifest"]


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def line(row: JobRow) -> dict[str, Any]:
        return {
            "job": row.id,
            "index": row.index,
            "values": dict(row.values),
            "files": [o["path"] for o in row.outputs],
            "sha256": [o["sha256"] for o in row.outputs],
            "worker": row.worker,
            # Where it ran: a Ray worker's URL names its host, node id and GPU (ray_backend.endpoint_url).
            "worker_url": row.worker_url,
            "attempt": row.attempt,
            "seconds": None if row.seconds is None else round(row.seconds, 3),
        }

    def lines(self) -> int:
        """How many complete lines the manifest holds, counted in chunks (a million lines is 100 MB)."""
        if not self.path.exists():
            return 0
        count = 0
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                count += block.count(b"\n")
        return count

    def ids(self) -> set[str]:
        """Job ids already listed; truncates a torn last line."""
        if not self.path.exists():
            return set()
        raw = self.path.read_bytes()
        good_end = raw.rfind(b"\n") + 1
        if good_end < len(raw):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_end)
        found = set()
        for line in raw[:good_end].splitlines():
            try:
                found.add(json.loads(line)["job"])
            except (ValueError, KeyError, TypeError):
                continue
        return found

    def reconcile(self, journal: Journal) -> int:
        """Append the lines of done jobs that are missing; returns how many."""
        have = self.ids()
        missing = [row for row in journal.rows(with_values=False) if row.state == "done" and row.id not in have]
        rows = [journal.get(row.id) for row in missing]
        self.append(r for r in rows if r is not None)
        return len(missing)

    def append(self, rows: Iterable[JobRow]) -> None:
        text = "".join(json.dumps(self.line(row), ensure_ascii=False) + "\n" for row in rows)
        if not text:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)
                # No fsync per line: like the journal's WAL, a killed process loses nothing
                # written; an OS crash may lose the tail, which reconcile() restores.
                handle.flush()
        except OSError as exc:
            # The journal has these jobs; a rerun's reconcile() writes the lines that are missing.
            raise write_error(exc, self.path, "The manifest", JournalError) from None
