"""Journal state transitions and durability rules (batch/journal.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyrig.batch.journal import Journal, OutputFile
from comfyrig.errors import JournalError

OUT = [OutputFile(path="outputs/j1-9-0.png", sha256="ab" * 32, bytes=10, node="9", source="x_00001_.png")]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite")
    j.add_jobs([("j1", 0, {"1.color": 1}), ("j2", 1, {"1.color": 2}), ("j3", 2, {"1.color": 3})])
    return j


def test_the_happy_path(journal: Journal) -> None:
    journal.submit("j1", 1, "worker-0", "http://a", "p1")
    row = journal.get("j1")
    assert row is not None and (row.state, row.attempt, row.worker, row.prompt_id) == ("submitted", 1, "worker-0", "p1")
    journal.done("j1", 1, OUT, 1.5)
    row = journal.get("j1")
    assert row is not None and row.state == "done" and row.outputs[0]["sha256"] == "ab" * 32 and row.seconds == 1.5
    assert row.values == {"1.color": 1}
    assert journal.counts() == {"done": 1, "pending": 2}
    assert [a["outcome"] for a in journal.attempts("j1")] == ["done"]


def test_requeue_fail_and_retry_failed(journal: Journal) -> None:
    journal.submit("j2", 1, "w0", "http://a", "p1")
    journal.requeue("j2", 1, {"message": "w0 died"}, charged=True)
    journal.submit("j2", 2, "w1", "http://b", "p2")
    journal.fail("j2", 2, {"kind": "application", "message": "boom"})
    row = journal.get("j2")
    assert row is not None and (row.state, row.failures, row.attempt) == ("failed", 1, 2)
    assert row.reason == {"kind": "application", "message": "boom"}
    assert [a["outcome"] for a in journal.attempts("j2")] == ["requeued", "failed"]
    assert journal.reopen_failed(["j2", "j1"]) == 1
    row = journal.get("j2")
    assert row is not None and (row.state, row.failures, row.attempt) == ("pending", 0, 2)
    journal.submit("j2", 3, "w1", "http://b", "p3")  # attempts keep counting: a new prompt id


@pytest.mark.parametrize("steps, needle", [
    ([("done", "j1", 1)], "cannot finish attempt 1 of job j1: it is pending"),
    ([("submit", "j1", 2)], "cannot submit attempt 2 of job j1: it is pending \\(attempt 0\\)"),
    ([("submit", "j1", 1), ("submit", "j1", 2)], "it is submitted"),
    ([("submit", "j1", 1), ("done", "j1", 1), ("requeue", "j1", 1)], "it is done"),
    ([("submit", "j1", 1), ("done", "j1", 2)], "cannot finish attempt 2"),
    ([("fail", "nope", 1)], "it does not exist"),
])
def test_illegal_transitions_are_refused(journal: Journal, steps: list[tuple[str, str, int]], needle: str) -> None:
    with pytest.raises(JournalError, match=needle):
        for what, job, attempt in steps:
            if what == "submit":
                journal.submit(job, attempt, "w", "http://a", f"p{attempt}")
            elif what == "done":
                journal.done(job, attempt, OUT, 1.0)
            elif what == "requeue":
                journal.requeue(job, attempt, {}, charged=False)
            else:
                journal.fail(job, attempt, {})


def test_a_failed_transaction_leaves_nothing(journal: Journal) -> None:
    with pytest.raises(JournalError), journal.transaction():
        journal.submit("j1", 1, "w", "http://a", "p1")
        journal.done("j2", 1, OUT, 1.0)  # j2 is pending: the whole transaction rolls back
    row = journal.get("j1")
    assert row is not None and row.state == "pending"


def test_reopen_keeps_everything(tmp_path: Path, journal: Journal) -> None:
    journal.submit("j3", 1, "w", "http://a", "p1")
    assert journal.add_jobs([("j3", 2, {}), ("j4", 3, {})]) == 1  # j3 is known: not reset
    assert journal.meta_default("client_id", lambda: "c1") == "c1"
    journal.close()
    again = Journal(tmp_path / "journal.sqlite")
    assert again.meta_default("client_id", lambda: "c2") == "c1"
    row = again.get("j3")
    assert row is not None and row.state == "submitted" and row.prompt_id == "p1"
    assert [r.id for r in again.rows()] == ["j1", "j2", "j3", "j4"]


def test_not_a_journal(tmp_path: Path) -> None:
    bad = tmp_path / "journal.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="cannot be opened"):
        Journal(bad)


def test_a_full_disk_is_a_journal_error_and_the_journal_stays_intact(tmp_path: Path) -> None:
    """SQLite's max_page_count makes the same SQLITE_FULL a full disk does."""
    journal = Journal(tmp_path / "j.sqlite")
    journal.add_jobs([("kept", 0, {"a": 1})])
    journal._db.execute("PRAGMA max_page_count = " + str(journal._db.execute("PRAGMA page_count").fetchone()[0]))
    with pytest.raises(JournalError, match="cannot be written: database or disk is full") as caught:
        journal.add_jobs((f"job{i}", i, {"text": "x" * 1000}) for i in range(1, 500))
    assert caught.value.hint is not None and "run the same command again" in caught.value.hint
    journal.close()
    again = Journal(tmp_path / "j.sqlite")
    assert [row.id for row in again.rows()] == ["kept"]
    again.close()
