"""The pure scheduler: events in, actions out (batch/scheduler.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from comfyrig.batch.journal import Journal
from comfyrig.batch.scheduler import (
    Cancel,
    Collect,
    Fail,
    Interrupt,
    Recover,
    Requeue,
    RestartWorker,
    Scheduler,
    Submit,
)


def make(jobs: int = 5, workers: tuple[str, ...] = ("a", "b"), **kwargs: object) -> Scheduler:
    s = Scheduler(**kwargs)  # type: ignore[arg-type]
    for w in workers:
        s.add_worker(w)
    for n in range(jobs):
        s.add_job(f"j{n}")
    return s


def submits(actions: list[object]) -> list[tuple[str, str]]:
    return [(a.job, a.worker) for a in actions if isinstance(a, Submit)]


def finish(s: Scheduler, job: str, now: float) -> None:
    slot = s.jobs[job]
    assert slot.worker and slot.prompt_id
    worker, pid = slot.worker, slot.prompt_id
    assert s.completed(worker, pid, now) == [Collect(job, worker, pid)]
    assert s.collected(worker, pid, now) is not None


def test_one_running_plus_one_queued_per_worker() -> None:
    s = make(6)
    assert submits(s.tick(0.0)) == []  # no worker is up yet
    s.worker_up("a", 0.0)
    s.worker_up("b", 0.1)
    assert submits(s.tick(1.0)) == [("j0", "a"), ("j1", "b"), ("j2", "a"), ("j3", "b")]
    assert submits(s.tick(1.1)) == []
    finish(s, "j1", 2.0)  # b frees up first: the next job goes there
    assert submits(s.tick(2.0)) == [("j4", "b")]
    finish(s, "j0", 3.0)
    assert submits(s.tick(3.0)) == [("j5", "a")]


def test_prompt_ids_change_per_attempt_and_stale_events_are_ignored() -> None:
    s = make(1, ("a", "b"))
    s.worker_up("a", 0)
    (first,) = s.tick(0)
    assert isinstance(first, Submit)
    s.worker_up("b", 0)
    assert isinstance(s.worker_down("a", "killed", 1)[0], Requeue)
    (second,) = s.tick(1)
    assert isinstance(second, Submit) and second.worker == "b" and second.attempt == 2 and second.prompt_id != first.prompt_id
    assert s.completed("a", first.prompt_id, 2) == []  # a late answer of attempt 1 changes nothing
    finish(s, "j0", 3)
    assert s.done == 1 and s.finished


def test_worker_death_charges_the_running_job_only() -> None:
    s = make(4, ("a", "b"), retries=2)
    s.worker_up("a", 0)
    s.worker_up("b", 0)
    assert submits(s.tick(0)) == [("j0", "a"), ("j1", "b"), ("j2", "a"), ("j3", "b")]
    pids = {job: s.jobs[job].prompt_id for job in ("j0", "j2")}
    actions = s.worker_down("a", "exit -9", 1)
    assert [(a.job, a.charged) for a in actions if isinstance(a, Requeue)] == [("j0", True), ("j2", False)]
    finish(s, "j1", 2)
    # Back up: what was taken from its queue is deleted there, so it never runs twice.
    assert s.worker_up("a", 2.5) == [Cancel("j0", "a", pids["j0"]), Cancel("j2", "a", pids["j2"])]
    # j2 (released) goes first; j0 avoids a, where it crashed
    assert submits(s.tick(3)) == [("j2", "a"), ("j0", "b")]
    assert s.worker_up("a", 4) == []  # cancelled once


def test_the_first_worker_up_takes_one_job_until_the_others_answer() -> None:
    """Issue 16 item 19: it queued a second job that the next worker up could have run."""
    s = make(4, ("a", "b", "c"))
    s.worker_up("a", 0)
    assert submits(s.tick(0)) == [("j0", "a")]
    s.worker_up("b", 1)
    assert submits(s.tick(1)) == [("j1", "b")]
    s.worker_down("c", "gave up: it never started", 2, gone=True)
    assert submits(s.tick(2)) == [("j2", "a"), ("j3", "b")]  # every live worker answered: queue one more each


def test_a_worker_lost_while_its_outputs_are_fetched_runs_the_job_again() -> None:
    # Seen with Ray: the actor died between "completed" and the download; the Collect sent
    # to it was lost, and the job stayed "collecting" for ever (the batch never ended).
    s = make(1, ("a", "b"))
    s.worker_up("a", 0)
    (sub,) = s.tick(0)
    assert isinstance(sub, Submit)
    assert s.completed("a", sub.prompt_id, 1) == [Collect("j0", "a", sub.prompt_id)]
    (requeue,) = s.worker_down("a", "Ray actor failed", 2)
    assert isinstance(requeue, Requeue) and not requeue.charged and "outputs" in requeue.reason["message"]
    s.worker_up("b", 3)
    assert submits(s.tick(3)) == [("j0", "b")]
    assert s.collected("a", sub.prompt_id, 4) is None  # a late answer of the lost attempt changes nothing
    finish(s, "j0", 5)
    assert s.done == 1 and s.finished


def test_outputs_that_never_arrive_are_retried_after_the_collect_timeout() -> None:
    s = make(1, ("a",), collect_timeout_s=60.0, retries=1)
    s.worker_up("a", 0)
    (sub,) = s.tick(0)
    assert isinstance(sub, Submit)
    s.completed("a", sub.prompt_id, 1)
    assert s.tick(60) == []
    (requeue, again) = s.tick(62)
    assert isinstance(requeue, Requeue) and requeue.charged and "did not arrive" in requeue.reason["message"]
    assert isinstance(again, Submit) and again.attempt == 2


def test_system_failures_are_retried_then_fail() -> None:
    s = make(1, ("a",), retries=1)
    s.worker_up("a", 0)
    for attempt, expect in ((1, Requeue), (2, Fail)):
        (sub,) = s.tick(attempt)
        assert isinstance(sub, Submit) and sub.attempt == attempt
        (out,) = s.system_failed("a", sub.prompt_id, "download failed", attempt)
        assert isinstance(out, expect)
    assert isinstance(out, Fail) and "gave up after 2 system failures" in out.reason["message"]
    assert s.failed == 1 and s.finished


def test_application_errors_are_not_retried() -> None:
    s = make(2, ("a",))
    s.worker_up("a", 0)
    sub = s.tick(0)[0]
    assert isinstance(sub, Submit)
    (fail,) = s.app_failed("a", sub.prompt_id, {"node": "4", "exception_type": "RuntimeError", "message": "boom"}, 1)
    assert isinstance(fail, Fail) and not fail.charged and fail.reason["node"] == "4" and fail.reason["kind"] == "application"
    assert submits(s.tick(1)) == []  # j1 was already there (depth 2); nothing new to send
    assert s.failed == 1 and s.active == 1


def test_a_hung_job_is_interrupted_then_rerun_elsewhere() -> None:
    s = make(1, ("a", "b"), job_timeout_s=5.0)
    s.worker_up("a", 0)
    (sub,) = s.tick(0)
    s.worker_up("b", 0)
    s.started("a", sub.prompt_id, 1)
    s.activity("a", sub.prompt_id, 2, node="3", step=(1, 10))
    assert s.tick(6.9) == []
    (interrupt,) = s.tick(7.1)
    assert interrupt == Interrupt("j0", "a", sub.prompt_id, "no progress for 5 s")
    assert s.tick(8) == []  # asked once
    (requeue,) = s.interrupted("a", sub.prompt_id, 8.5)
    assert isinstance(requeue, Requeue) and requeue.charged and "hung" in requeue.reason["message"]
    assert submits(s.tick(9)) == [("j0", "b")]


def test_an_interrupt_that_does_not_take_restarts_the_worker() -> None:
    s = make(2, ("a",), job_timeout_s=1.0, interrupt_grace_s=2.0)
    s.worker_up("a", 0)
    sub = s.tick(0)[0]
    assert isinstance(sub, Submit)
    s.started("a", sub.prompt_id, 0)
    assert isinstance(s.tick(1.5)[0], Interrupt)
    actions = s.tick(4.0)
    assert RestartWorker("a", "job j0 did not stop 2 s after an interrupt") in actions
    assert [(a.job, a.charged) for a in actions if isinstance(a, Requeue)] == [("j0", True), ("j1", False)]
    assert not s.workers["a"].up


def test_ctrl_c_then_again() -> None:
    s = make(6, ("a",))
    s.worker_up("a", 0)
    first, second = (a for a in s.tick(0) if isinstance(a, Submit))
    s.started("a", first.prompt_id, 0.5)
    assert s.stop(1) == [Cancel(second.job, "a", second.prompt_id)]
    (back,) = s.cancelled("a", second.prompt_id, 1.1)
    assert isinstance(back, Requeue) and not back.charged
    assert s.tick(2) == []  # nothing new while stopping
    assert s.stop(3) == [Interrupt(first.job, "a", first.prompt_id, "Ctrl-C")]
    (again,) = s.interrupted("a", first.prompt_id, 3.5)
    assert isinstance(again, Requeue) and not again.charged
    assert s.finished and s.pending == 6


def test_recovery_of_an_earlier_runs_jobs() -> None:
    s = Scheduler()
    s.add_worker("a")
    s.add_job("done1", state="done")
    s.add_job("failed1", state="failed")
    s.add_recovering("r1", worker="a", attempt=2, failures=1, now=0)
    s.add_job("p1", attempt=1)
    (recover,) = s.worker_up("a", 1)
    assert isinstance(recover, Recover) and recover.job == "r1"
    s.queued("a", recover.prompt_id, 1.5)
    assert submits(s.tick(2)) == [("p1", "a")]  # r1 holds one of the two places
    assert s.jobs["r1"].attempt == 2
    finish(s, "r1", 3)
    assert "r1" not in s.jobs and s.done == 2 and s.failed == 1  # an ended job is a count


class World:
    """A random sequence of worker events and faults around one scheduler and a real journal."""

    def __init__(self, rng: random.Random, tmp: Path, jobs: int, workers: int) -> None:
        self.rng = rng
        self.s = Scheduler(retries=2, job_timeout_s=3.0, interrupt_grace_s=2.0)
        self.journal = Journal(tmp / "j.sqlite")
        self.journal.add_jobs((f"j{n}", n, {}) for n in range(jobs))
        self.names = [f"w{n}" for n in range(workers)]
        for name in self.names:
            self.s.add_worker(name)
        for n in range(jobs):
            self.s.add_job(f"j{n}")
        self.now = 0.0
        self.hung: set[str] = set()  # prompt ids that will never answer
        self.files = 0

    def apply(self, actions: list[object]) -> None:
        for a in actions:
            if isinstance(a, Submit):
                self.journal.submit(a.job, a.attempt, a.worker, a.worker, a.prompt_id)
            elif isinstance(a, Requeue):
                self.journal.requeue(a.job, a.attempt, a.reason, charged=a.charged)
            elif isinstance(a, Fail):
                self.journal.fail(a.job, a.attempt, a.reason, charged=a.charged)
            elif isinstance(a, Collect):
                if self.rng.random() < 0.1:
                    self.apply(self.s.system_failed(a.worker, a.prompt_id, "download failed", self.now))
                else:
                    result = self.s.collected(a.worker, a.prompt_id, self.now)
                    assert result is not None
                    from comfyrig.batch.journal import OutputFile
                    self.journal.done(result[0], result[1], [OutputFile("f", "0", 1, "9", "x.png")], result[2])
                    self.files += 1
            elif isinstance(a, Interrupt) and a.prompt_id in self.hung and self.rng.random() < 0.5:
                self.hung.discard(a.prompt_id)
                self.apply(self.s.interrupted(a.worker, a.prompt_id, self.now))
            elif isinstance(a, RestartWorker):
                self.apply(self.s.worker_up(a.worker, self.now + 1))

    def step(self) -> None:
        self.now += self.rng.uniform(0.1, 1.5)
        r = self.rng.random()
        name = self.rng.choice(self.names)
        w = self.s.workers[name]
        if not w.up:
            if r < 0.5:
                self.apply(self.s.worker_up(name, self.now))
        elif r < 0.05:
            self.apply(self.s.worker_down(name, "killed", self.now))
        elif w.inflight:
            slot = self.s.jobs[w.inflight[0]]
            pid = slot.prompt_id
            assert pid is not None
            if pid in self.hung:
                pass
            elif r < 0.12:
                self.hung.add(pid)
                self.s.started(name, pid, self.now)
            elif r < 0.2:
                self.apply(self.s.app_failed(name, pid, {"message": "bad"}, self.now))
            elif r < 0.25:
                self.apply(self.s.system_failed(name, pid, "HTTP 500", self.now))
            else:
                self.s.started(name, pid, self.now)
                self.apply(self.s.completed(name, pid, self.now))
        if r > 0.995 and self.s.stopping is None:
            self.apply(self.s.stop(self.now))
        self.apply(self.s.tick(self.now))


@pytest.mark.parametrize("seed", range(12))
def test_every_job_ends_in_exactly_one_state_whatever_happens(tmp_path: Path, seed: int) -> None:
    world = World(random.Random(seed), tmp_path, jobs=25, workers=3)
    for _ in range(5000):
        if world.s.finished:
            break
        world.step()
    assert world.s.finished
    states = [slot.state for slot in world.s.jobs.values()]  # ended jobs are counts, not held
    counts = world.journal.counts()
    if world.s.stopping is None:
        assert states == []
        assert counts.get("done", 0) + counts.get("failed", 0) == 25
    assert set(states) <= {"pending"}
    assert counts.get("submitted", 0) == 0  # nothing left in flight, in memory or on disk
    assert counts.get("done", 0) == world.s.done == world.files
    assert counts.get("failed", 0) == world.s.failed
    assert world.s.done + world.s.failed + len(states) == 25
