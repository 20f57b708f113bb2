"""The durable batch journal: one SQLite file in the output folder.

Every job has one row; its state moves only along these edges, each checked in
the UPDATE itself (a row that is not in the expected state raises JournalError)::

    pending --submit--> submitted --done--> done
       ^                   |  |
       +---- requeue ------+  +--fail--> failed --(retry-failed, at start)--> pending

A state is committed *before* the step it announces (submitted before POST
/prompt) and *after* the step it records (done after the files are renamed in
place), so a dispatcher killed at any point leaves a journal from which the
next run resumes. WAL with synchronous=NORMAL: a commit survives the process
being killed (SIGKILL); only an operating-system crash can lose the newest
commits, which are then redone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import JournalError

__all__ = ["JobRow", "JobState", "Journal", "OutputFile", "read_meta"]

JobState = Literal["pending", "submitted", "done", "failed"]
TERMINAL: frozenset[str] = frozenset({"done", "failed"})
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    vars TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'submitted', 'done', 'failed')),
    attempt INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    worker_url TEXT,
    prompt_id TEXT,
    submitted_at REAL,
    finished_at REAL,
    seconds REAL,
    outputs TEXT,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    worker_url TEXT NOT NULL,
    prompt_id TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,
    reason TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, idx);
"""


@dataclass(frozen=True)
class OutputFile:
    """One downloaded output: ``path`` relative to the output folder."""

    path: str
    sha256: str
    bytes: int
    node: str
    source: str  # the file name on the worker

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes, "node": self.node, "source": self.source}


@dataclass(frozen=True)
class JobRow:
    id: str
    index: int
    values: Mapping[str, Any]
    state: JobState
    attempt: int
    failures: int
    worker: str | None
    worker_url: str | None
    prompt_id: str | None
    seconds: float | None
    outputs: tuple[dict[str, Any], ...]
    reason: Mapping[str, Any] | None


def read_meta(path: Path) -> dict[str, str]:
    """The meta table of the journal at ``path``, opened read-only ({} when there is none), for
    the checks a dry run and a real run make before anything is started or written."""
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise JournalError(f"The batch journal {path} cannot be read: {exc}.",
                           hint="Give a new --out folder, or move the damaged journal away.") from None


class Journal:
    """Open (or create) ``path``. Methods write inside ``with journal.transaction():``
    (one commit for many changes) or, outside one, commit each change at once."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"The batch journal {path} cannot be opened: {exc}.") from exc
        self._in_tx = False
        if self.get_meta("schema") is None:
            self.set_meta("schema", SCHEMA_VERSION)
        elif self.get_meta("schema") != SCHEMA_VERSION:
            raise JournalError(f"The batch journal {path} was written by another comfyrig version (schema {self.get_meta('schema')}).")

    def close(self) -> None:
        self._db.close()

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                yield
            except BaseException:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                    self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._in_tx = False
        except sqlite3.Error as exc:
            # A full disk, a read-only folder, a journal locked by another process: the change was
            # rolled back, so what the journal recorded before is intact and a rerun resumes there.
            raise JournalError(
                f"The batch journal {self.path} cannot be written: {exc}.",
                hint="Nothing it recorded is lost: fix that (free space, permissions), then run the same command again to resume.",
            ) from None

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self.transaction():
            return self._db.execute(sql, args).rowcount

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def meta_default(self, key: str, make: Any) -> str:
        """The stored value of ``key``, storing ``make()`` first when there is none."""
        value = self.get_meta(key)
        if value is None:
            value = str(make())
            self.set_meta(key, value)
        return value

    # -- jobs ---------------------------------------------------------------------------------
    def add_jobs(self, jobs: Iterable[tuple[str, int, Mapping[str, Any]]]) -> int:
        """Insert the jobs not yet present as pending; returns how many were new."""
        added = 0
        with self.transaction():
            cursor = self._db.cursor()
            chunk: list[tuple[str, int, str]] = []
            for job, index, values in jobs:
                chunk.append((job, index, json.dumps(values, sort_keys=True)))
                if len(chunk) >= 2000:
                    cursor.executemany("INSERT OR IGNORE INTO jobs (id, idx, vars, state) VALUES (?, ?, ?, 'pending')", chunk)
                    added += cursor.rowcount
                    chunk = []
            if chunk:
                cursor.executemany("INSERT OR IGNORE INTO jobs (id, idx, vars, state) VALUES (?, ?, ?, 'pending')", chunk)
                added += cursor.rowcount
        return added

    _COLUMNS = "id, idx, vars, state, attempt, failures, worker, worker_url, prompt_id, seconds, outputs, reason"

    @staticmethod
    def _row(raw: tuple[Any, ...], with_values: bool = True) -> JobRow:
        return JobRow(
            id=raw[0],
            index=raw[1],
            values=json.loads(raw[2]) if with_values else {},
            state=raw[3],
            attempt=raw[4],
            failures=raw[5],
            worker=raw[6],
            worker_url=raw[7],
            prompt_id=raw[8],
            seconds=raw[9],
            outputs=tuple(json.loads(raw[10])) if raw[10] else (),
            reason=json.loads(raw[11]) if raw[11] else None,
        )

    def get(self, job: str) -> JobRow | None:
        raw = self._db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE id = ?", (job,)).fetchone()
        return None if raw is None else self._row(raw)

    def rows(self, *, with_values: bool = False) -> Iterator[JobRow]:
        """Every job in index order; variation values only when asked (they cost memory)."""
        for raw in self._db.execute(f"SELECT {self._COLUMNS} FROM jobs ORDER BY idx"):
            yield self._row(raw, with_values)

    def next_index(self) -> int:
        """One past the highest job number journaled: where expansion goes on (jobs go in in order)."""
        row = self._db.execute("SELECT MAX(idx) FROM jobs").fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def pending_after(self, index: int, limit: int) -> list[tuple[str, int, int, int]]:
        """Up to ``limit`` pending jobs numbered above ``index``, in order: (id, index, attempt, failures)."""
        cur = self._db.execute(
            "SELECT id, idx, attempt, failures FROM jobs WHERE state = 'pending' AND idx > ? ORDER BY idx LIMIT ?", (index, limit)
        )
        return [(str(a), int(b), int(c), int(d)) for a, b, c, d in cur]

    def in_state(self, state: JobState) -> list[JobRow]:
        """Every job in ``state`` (used for 'submitted': at most the workers' queues of an earlier run)."""
        return [self._row(raw) for raw in self._db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE state = ? ORDER BY idx", (state,))]

    def reopen_all_failed(self) -> int:
        """failed -> pending with a fresh retry budget, for every failed job (--retry-failed)."""
        return self._write("UPDATE jobs SET state = 'pending', failures = 0, reason = NULL WHERE state = 'failed'", ())

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))

    def _expect(self, changed: int, job: str, what: str) -> None:
        if changed != 1:
            row = self.get(job)
            now = f"it is {row.state} (attempt {row.attempt})" if row else "it does not exist"
            raise JournalError(f"Journal: cannot {what} job {job}: {now}.")

    def submit(self, job: str, attempt: int, worker: str, worker_url: str, prompt_id: str) -> None:
        """pending -> submitted, as attempt ``attempt`` (which must be the next one)."""
        now = self._clock()
        with self.transaction():
            changed = self._db.execute(
                "UPDATE jobs SET state = 'submitted', attempt = ?, worker = ?, worker_url = ?, prompt_id = ?, "
                "submitted_at = ? WHERE id = ? AND state = 'pending' AND attempt = ?",
                (attempt, worker, worker_url, prompt_id, now, job, attempt - 1),
            ).rowcount
            self._expect(changed, job, f"submit attempt {attempt} of")
            self._db.execute(
                "INSERT OR REPLACE INTO attempts (job_id, attempt, worker, worker_url, prompt_id, submitted_at) VALUES (?, ?, ?, ?, ?, ?)",
                (job, attempt, worker, worker_url, prompt_id, now),
            )

    def _end_attempt(self, job: str, attempt: int, outcome: str, reason: Mapping[str, Any] | None) -> None:
        self._db.execute(
            "UPDATE attempts SET ended_at = ?, outcome = ?, reason = ? WHERE job_id = ? AND attempt = ?",
            (self._clock(), outcome, json.dumps(reason) if reason else None, job, attempt),
        )

    def done(self, job: str, attempt: int, outputs: Iterable[OutputFile], seconds: float) -> None:
        """submitted -> done, after the output files are in place."""
        files = json.dumps([o.to_json() for o in outputs])
        with self.transaction():
            changed = self._db.execute(
                "UPDATE jobs SET state = 'done', outputs = ?, seconds = ?, finished_at = ?, reason = NULL "
                "WHERE id = ? AND state = 'submitted' AND attempt = ?",
                (files, seconds, self._clock(), job, attempt),
            ).rowcount
            self._expect(changed, job, f"finish attempt {attempt} of")
            self._end_attempt(job, attempt, "done", None)

    def fail(self, job: str, attempt: int, reason: Mapping[str, Any], *, charged: bool = False) -> None:
        """submitted -> failed (an application error, or system failures past --retries)."""
        with self.transaction():
            changed = self._db.execute(
                "UPDATE jobs SET state = 'failed', reason = ?, finished_at = ?, failures = failures + ? "
                "WHERE id = ? AND state = 'submitted' AND attempt = ?",
                (json.dumps(reason), self._clock(), int(charged), job, attempt),
            ).rowcount
            self._expect(changed, job, f"fail attempt {attempt} of")
            self._end_attempt(job, attempt, "failed", reason)

    def requeue(self, job: str, attempt: int, reason: Mapping[str, Any], *, charged: bool) -> None:
        """submitted -> pending; ``charged`` counts a system failure against --retries."""
        with self.transaction():
            changed = self._db.execute(
                "UPDATE jobs SET state = 'pending', reason = ?, failures = failures + ? "
                "WHERE id = ? AND state = 'submitted' AND attempt = ?",
                (json.dumps(reason), int(charged), job, attempt),
            ).rowcount
            self._expect(changed, job, f"requeue attempt {attempt} of")
            self._end_attempt(job, attempt, "requeued" if charged else "released", reason)

    def reopen_failed(self, jobs: Iterable[str]) -> int:
        """failed -> pending with a fresh retry budget (--retry-failed); returns how many."""
        n = 0
        with self.transaction():
            for job in jobs:
                n += self._db.execute(
                    "UPDATE jobs SET state = 'pending', failures = 0, reason = NULL WHERE id = ? AND state = 'failed'", (job,)
                ).rowcount
        return n

    def attempts(self, job: str) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT attempt, worker, worker_url, prompt_id, outcome, reason FROM attempts WHERE job_id = ? ORDER BY attempt", (job,)
        )
        return [
            {"attempt": a, "worker": w, "worker_url": u, "prompt_id": p, "outcome": o, "reason": json.loads(r) if r else None}
            for a, w, u, p, o, r in cur
        ]
