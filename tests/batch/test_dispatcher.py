"""The dispatcher's loop driven by scripted worker events: fake endpoints record the commands
they get, the test posts typed events and turns the loop one ``step`` at a time on a fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from comfyrig.batch.dispatcher import BatchOptions, Dispatcher
from comfyrig.batch.events import (
    BatchEvent,
    BatchProgress,
    JobDone,
    JobFailed,
    JobRetried,
    StopRequested,
    WorkerCameUp,
    WorkerWentDown,
    describe,
)
from comfyrig.batch.journal import Journal, OutputFile
from comfyrig.batch.protocol import (
    AppError,
    AppFailed,
    CancelPrompt,
    CollectOutputs,
    InterruptPrompt,
    OutputsCollected,
    PromptActivity,
    PromptCancelled,
    PromptCompleted,
    PromptInterrupted,
    PromptQueued,
    PromptStarted,
    RecoverPrompt,
    RestartServer,
    SubmitPrompt,
    SystemFailed,
    WorkerCommand,
    WorkerDown,
    WorkerEvent,
    WorkerUp,
)
from comfyrig.batch.variations import build_spec
from comfyrig.comfy.workflow import workflow_from_json

from .e2e import IMAGE_WF

C = TypeVar("C", bound=WorkerCommand)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEndpoint:
    """Records commands; the test answers them by posting events."""

    def __init__(self, name: str) -> None:
        self.name, self.url, self.label = name, f"http://{name}:8188", f"GPU {name[-1]}"
        self.commands: list[WorkerCommand] = []
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def send(self, command: WorkerCommand) -> None:
        self.commands.append(command)

    def stop(self) -> None:
        self.stopped = True

    def join(self, timeout: float) -> None:
        pass

    def take(self, kind: type[C]) -> list[C]:
        """The commands of ``kind`` received since the last take (others are kept)."""
        taken = [c for c in self.commands if isinstance(c, kind)]
        self.commands = [c for c in self.commands if not isinstance(c, kind)]
        return taken


class Rig:
    def __init__(self, out: Path, *, jobs: int = 3, workers: tuple[str, ...] = ("w0", "w1"), **options: Any) -> None:
        self.out = out
        self.wf = workflow_from_json(json.loads(json.dumps(IMAGE_WF)), "wf.json")
        self.spec = build_spec(self.wf, sweeps=[f"1.color=1..{jobs}"])
        self.journal = Journal(out / "journal.sqlite")
        self.clock = Clock()
        self.reported: list[BatchEvent] = []
        self.options = BatchOptions(out_dir=out, **options)
        self.endpoints = {name: FakeEndpoint(name) for name in workers}
        self.d = Dispatcher(self.wf, self.spec, self.journal, self.options, reporter=self.reported.append,
                            clock=self.clock, snapshot_every_s=0.0)
        self.d.prepare(list(self.endpoints.values()))
        self.d.start()
        self.jobs = [job.id for job in self.spec.jobs()]

    def post(self, *events: WorkerEvent) -> bool:
        """Post the events, turn the loop once; True when the batch is over."""
        for event in events:
            self.d.post(event)
        return self.d.step(0)

    def at(self, seconds: float) -> bool:
        self.clock.now += seconds
        return self.d.step(0)

    def submits(self, worker: str) -> list[SubmitPrompt]:
        return self.endpoints[worker].take(SubmitPrompt)

    def state(self, job: str) -> str:
        row = self.journal.get(job)
        assert row is not None
        return row.state

    def news(self) -> list[str]:
        return [line for line in map(describe, self.reported) if line is not None]

    def finish(self, worker: str, submit: SubmitPrompt) -> None:
        """Run one prompt through: started, completed, collected."""
        assert not self.post(PromptStarted(worker, submit.prompt_id))
        self.post(PromptCompleted(worker, submit.prompt_id))
        assert self.endpoints[worker].take(CollectOutputs) == [CollectOutputs(submit.job, submit.prompt_id)]
        self.post(OutputsCollected(worker, submit.prompt_id, (output(submit.job),)))


def output(job: str) -> OutputFile:
    return OutputFile(path=f"outputs/{job}-3-0.png", sha256="0" * 64, bytes=68, node="3", source=f"batch_{job}_00001_.png")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made: list[Rig] = []

    def make(**kwargs: Any) -> Rig:
        made.append(Rig(tmp_path, **kwargs))
        return made[-1]

    yield make  # type: ignore[misc]
    for r in made:
        r.journal.close()


def test_submit_progress_complete_collect(rig: Any) -> None:
    r: Rig = rig(jobs=3, workers=("w0",))
    assert r.endpoints["w0"].started
    assert not r.post() and r.endpoints["w0"].commands == []  # nobody is up: nothing is sent
    r.post(WorkerUp("w0", device="cuda:0 Fake GPU", comfyui="0.3.76"))
    first, second = r.submits("w0")  # one running, one queued
    assert (first.job, second.job) == (r.jobs[0], r.jobs[1])
    # The prompt is the workflow with the job's values, its outputs tagged with the job id.
    assert first.prompt["1"]["inputs"]["color"] == 1 and second.prompt["1"]["inputs"]["color"] == 2
    assert first.prompt["3"]["inputs"]["filename_prefix"] == f"batch_{first.job}"
    row = r.journal.get(first.job)
    assert row is not None and (row.state, row.worker_url, row.prompt_id) == ("submitted", "http://w0:8188", first.prompt_id)

    r.post(PromptStarted("w0", first.prompt_id), PromptActivity("w0", first.prompt_id, node="3", step=(7, 20)))
    progress = [e.snapshot for e in r.reported if isinstance(e, BatchProgress)][-1]
    [worker] = progress.workers
    assert (worker.state, worker.job, worker.node, worker.step, worker.device) == ("up", first.job, "3", (7, 20), "cuda:0 Fake GPU")

    r.clock.now += 2.5
    r.post(PromptCompleted("w0", first.prompt_id))
    assert r.endpoints["w0"].take(CollectOutputs) == [CollectOutputs(first.job, first.prompt_id)]
    assert [s.job for s in r.submits("w0")] == [r.jobs[2]]  # its slot is free while it is collected
    assert r.state(first.job) == "submitted"  # done only once its files are in place
    r.post(OutputsCollected("w0", first.prompt_id, (output(first.job),)))
    assert r.state(first.job) == "done"
    row = r.journal.get(first.job)
    assert row is not None and row.outputs[0]["path"] == f"outputs/{first.job}-3-0.png" and row.seconds == 2.5
    manifest = [json.loads(line) for line in (r.out / "manifest.jsonl").read_text().splitlines()]
    assert [m["job"] for m in manifest] == [first.job]
    assert f"done {first.job} on w0 in 2.5 s (1 file) [1/3]" in r.news()
    assert r.news()[0] == "w0: up at http://w0:8188 (cuda:0 Fake GPU)"


def test_the_loop_ends_when_every_job_is_done(rig: Any) -> None:
    r: Rig = rig(jobs=2, workers=("w0",))
    r.post(WorkerUp("w0"))
    a, b = r.submits("w0")
    r.finish("w0", a)
    assert not r.d.step(0)
    r.finish("w0", b)
    assert r.d.step(0) and r.d.gave_up is None
    result = r.d.finish()
    assert (result.snapshot.done, result.snapshot.total, result.interrupted) == (2, 2, False)
    assert isinstance(r.reported[-1], BatchProgress) and r.reported[-1].snapshot == result.snapshot
    assert [e.done for e in r.reported if isinstance(e, JobDone)] == [1, 2]


def test_a_worker_that_goes_away_has_its_jobs_run_elsewhere(rig: Any) -> None:
    r: Rig = rig(jobs=2, workers=("w0", "w1"))
    r.post(WorkerUp("w0"), WorkerUp("w1"), WorkerDown("w1", "restarting"))  # w1 answered once: w0 may queue two
    running, queued = r.submits("w0")
    r.post(PromptStarted("w0", running.prompt_id))
    r.post(WorkerUp("w1"), WorkerDown("w0", "the websocket closed"))
    assert "w0: down: the websocket closed" in r.news()
    again = r.submits("w1")
    # The running job is charged (it runs again elsewhere, attempt 2); the queued one only released.
    assert {(s.job, s.prompt_id != p.prompt_id) for s, p in zip(sorted(again, key=lambda s: s.job),
                                                                sorted((running, queued), key=lambda s: s.job), strict=True)} \
        == {(running.job, True), (queued.job, True)}
    assert any(isinstance(e, JobRetried) and e.job == running.job for e in r.reported)
    # A late answer about the first attempt changes nothing.
    r.post(PromptCompleted("w0", running.prompt_id))
    assert r.endpoints["w0"].take(CollectOutputs) == []
    assert r.state(running.job) == "submitted"


def test_a_job_collecting_from_a_worker_that_goes_away_runs_again(rig: Any) -> None:
    r: Rig = rig(jobs=1, workers=("w0", "w1"))
    r.post(WorkerUp("w0"))
    [submit] = r.submits("w0")
    r.post(PromptStarted("w0", submit.prompt_id), PromptCompleted("w0", submit.prompt_id))
    assert r.endpoints["w0"].take(CollectOutputs)
    r.post(WorkerUp("w1"), WorkerDown("w0", "killed", gone=True))
    assert "w0: gone: killed" in r.news()
    [again] = r.submits("w1")
    assert again.job == submit.job and again.prompt_id != submit.prompt_id
    r.post(OutputsCollected("w0", submit.prompt_id, (output(submit.job),)))  # too late: ignored
    assert r.state(submit.job) == "submitted"
    r.finish("w1", again)
    assert r.state(submit.job) == "done"


def test_an_application_error_fails_the_job_without_retry(rig: Any) -> None:
    r: Rig = rig(jobs=2, workers=("w0",))
    r.post(WorkerUp("w0"))
    bad, good = r.submits("w0")
    error = AppError("Value not in list: unet_name: 'x' not in []", node="1", class_type="UNETLoader",
                     exception_type="value_not_in_list", error_type="prompt_outputs_failed_validation")
    r.post(AppFailed("w0", bad.prompt_id, error))
    assert r.state(bad.job) == "failed" and r.submits("w0") == []
    row = r.journal.get(bad.job)
    assert row is not None and row.reason is not None
    assert {k: row.reason[k] for k in ("kind", "worker", "node", "class_type", "exception_type")} == {
        "kind": "application", "worker": "w0", "node": "1", "class_type": "UNETLoader", "exception_type": "value_not_in_list"}
    line = f"failed {bad.job}: node 1 (UNETLoader): value_not_in_list: Value not in list: unet_name: 'x' not in []"
    assert line in r.news()
    assert [describe(n) for n in r.d.snapshot().recent] == [line]
    r.finish("w0", good)
    assert r.d.step(0)
    assert (r.d.finish().snapshot.failed, r.d.gave_up) == (1, None)


def test_system_failures_are_retried_then_given_up(rig: Any) -> None:
    r: Rig = rig(jobs=1, workers=("w0",), retries=1)
    r.post(WorkerUp("w0"))
    [first] = r.submits("w0")
    r.post(SystemFailed("w0", first.prompt_id, "downloading the outputs failed"))
    [second] = r.submits("w0")  # the only worker: it goes there again
    assert second.prompt_id != first.prompt_id and f"retry {first.job}: downloading the outputs failed" in r.news()
    assert r.post(SystemFailed("w0", second.prompt_id, "downloading the outputs failed"))  # over: 2 failures, 1 retry
    assert r.state(first.job) == "failed"
    assert any(isinstance(e, JobFailed) and "gave up after 2 system failures" in e.reason["message"] for e in r.reported)


def test_a_hung_job_is_interrupted_then_its_worker_restarted(rig: Any) -> None:
    r: Rig = rig(jobs=2, workers=("w0", "w1"), job_timeout_s=10.0, interrupt_grace_s=5.0)
    r.post(WorkerUp("w0"))
    [stuck] = r.submits("w0")  # one only while w1 has not answered yet
    r.post(PromptStarted("w0", stuck.prompt_id))
    r.at(9.0)
    assert r.endpoints["w0"].take(InterruptPrompt) == []
    r.at(2.0)  # 11 s without progress
    assert r.endpoints["w0"].take(InterruptPrompt) == [InterruptPrompt(stuck.prompt_id)]
    assert f"interrupting {stuck.job} on w0: no progress for 10 s" in r.news()
    r.at(6.0)  # the interrupt did not take: the server itself is stuck
    assert r.endpoints["w0"].take(RestartServer) == [RestartServer()]
    assert any(line.startswith("w0: restarting it: job ") for line in r.news())
    assert r.state(stuck.job) == "pending"  # requeued, waiting for a worker
    # A --url server cannot be restarted: when it wakes, the job taken from it leaves its queue.
    r.post(WorkerUp("w0"))
    assert CancelPrompt(stuck.prompt_id) in r.endpoints["w0"].take(CancelPrompt)


def test_an_interrupted_hang_runs_again_charged(rig: Any) -> None:
    r: Rig = rig(jobs=1, workers=("w0", "w1"), job_timeout_s=10.0)
    r.post(WorkerUp("w0"), WorkerUp("w1"))
    [stuck] = r.submits("w0") + r.submits("w1")
    worker = "w0" if r.journal.get(stuck.job).worker == "w0" else "w1"  # type: ignore[union-attr]
    r.post(PromptStarted(worker, stuck.prompt_id))
    r.at(11.0)
    r.post(PromptInterrupted(worker, stuck.prompt_id))
    other = "w1" if worker == "w0" else "w0"
    [again] = r.submits(other)  # avoids the worker it hung on
    assert again.job == stuck.job
    assert any(isinstance(e, JobRetried) and e.reason["kind"] == "hang" for e in r.reported)


def test_ctrl_c_takes_back_queued_jobs_then_interrupts_running_ones(rig: Any) -> None:
    r: Rig = rig(jobs=3, workers=("w0",))
    r.post(WorkerUp("w0"))
    running, queued = r.submits("w0")
    r.post(PromptStarted("w0", running.prompt_id))
    r.d.signal()
    assert not r.post()
    assert r.reported.count(StopRequested(1)) == 1
    assert "interrupted: no new jobs; running jobs finish (Ctrl-C again to interrupt them)" in r.news()
    assert r.endpoints["w0"].take(CancelPrompt) == [CancelPrompt(queued.prompt_id)]
    r.post(PromptCancelled("w0", queued.prompt_id))
    assert r.state(queued.job) == "pending" and r.submits("w0") == []  # released, nothing new is sent
    r.d.signal()
    assert not r.post()
    assert "interrupted again: interrupting the running jobs" in r.news()
    assert r.endpoints["w0"].take(InterruptPrompt) == [InterruptPrompt(running.prompt_id)]
    assert r.post(PromptInterrupted("w0", running.prompt_id))  # nothing in flight: over
    result = r.d.finish()
    assert result.interrupted and result.snapshot.pending == 3 and r.d.gave_up is None
    assert all(r.state(job) == "pending" for job in r.jobs)


def test_the_third_ctrl_c_stops_at_once(rig: Any) -> None:
    r: Rig = rig(jobs=1, workers=("w0",))
    r.post(WorkerUp("w0"))
    [running] = r.submits("w0")
    r.post(PromptStarted("w0", running.prompt_id))
    r.d.signal()
    r.d.signal()
    r.d.signal()
    assert not r.post()  # the deadline is "now": the next turn ends it
    assert r.at(0.1) and r.d.gave_up == "interrupted jobs did not stop in time"


def test_resume_recovers_prompts_an_earlier_run_submitted(rig: Any) -> None:
    first: Rig = rig(jobs=3, workers=("w0",))
    first.post(WorkerUp("w0"))
    a, b = first.submits("w0")
    first.journal.close()  # the dispatcher was killed with two prompts in flight

    second: Rig = rig(jobs=3, workers=("w0",))
    second.post(WorkerUp("w0"))
    recovering = second.endpoints["w0"].take(RecoverPrompt)
    assert sorted(recovering, key=lambda c: c.job) == sorted([RecoverPrompt(a.job, a.prompt_id), RecoverPrompt(b.job, b.prompt_id)],
                                                             key=lambda c: c.job)
    assert second.submits("w0") == []  # its two slots hold the adopted prompts
    second.post(PromptQueued("w0", b.prompt_id), PromptCompleted("w0", a.prompt_id))
    assert second.endpoints["w0"].take(CollectOutputs) == [CollectOutputs(a.job, a.prompt_id)]
    second.post(OutputsCollected("w0", a.prompt_id, (output(a.job),)))
    assert second.state(a.job) == "done"
    [c] = second.submits("w0")
    assert c.job not in (a.job, b.job)


def test_resume_releases_prompts_of_a_worker_that_is_not_there_now(rig: Any) -> None:
    first: Rig = rig(jobs=1, workers=("old",))
    first.post(WorkerUp("old"))
    [submit] = first.submits("old")
    first.journal.close()
    second: Rig = rig(jobs=1, workers=("w0",))
    second.post(WorkerUp("w0"))
    [again] = second.submits("w0")
    assert again.job == submit.job and again.prompt_id != submit.prompt_id


def test_gives_up_when_no_worker_comes_up(rig: Any) -> None:
    r: Rig = rig(jobs=1, workers=("w0",), worker_wait_s=60.0)
    assert not r.at(59.0)
    assert r.at(2.0) and r.d.gave_up == "no worker was available for 60 s"


def test_gives_up_when_every_worker_is_gone(rig: Any) -> None:
    r: Rig = rig(jobs=2, workers=("w0", "w1"))
    r.post(WorkerUp("w0"), WorkerUp("w1"))
    assert r.post(WorkerDown("w0", "given up", gone=True), WorkerDown("w1", "given up", gone=True))
    assert r.d.gave_up == "every worker is gone"
    assert {"w0: gone: given up", "w1: gone: given up"} <= set(r.news())


def test_a_down_worker_that_was_never_up_is_not_news(rig: Any) -> None:
    r: Rig = rig(jobs=1, workers=("w0",))
    r.post(WorkerDown("w0", "nothing answers"))
    assert not any(isinstance(e, WorkerWentDown) for e in r.reported)
    r.post(WorkerUp("w0"))
    assert [e for e in r.reported if isinstance(e, WorkerCameUp)] == [WorkerCameUp("w0", "http://w0:8188", None)]


class InstantEndpoint(FakeEndpoint):
    """Answers every command at once, from ``send`` (the dispatcher's own thread)."""

    def __init__(self, name: str, dispatcher: Dispatcher) -> None:
        super().__init__(name)
        self.d = dispatcher

    def start(self) -> None:
        super().start()
        self.d.post(WorkerUp(self.name))

    def send(self, command: WorkerCommand) -> None:
        super().send(command)
        match command:
            case SubmitPrompt(job=job, prompt_id=pid):
                self.d.post(PromptStarted(self.name, pid))
                self.d.post(PromptCompleted(self.name, pid))
            case CollectOutputs(job=job, prompt_id=pid):
                self.d.post(OutputsCollected(self.name, pid, (output(job),)))


def test_run_starts_and_stops_the_workers(tmp_path: Path) -> None:
    wf = workflow_from_json(json.loads(json.dumps(IMAGE_WF)), "wf.json")
    journal = Journal(tmp_path / "journal.sqlite")
    reported: list[BatchEvent] = []
    d = Dispatcher(wf, build_spec(wf, sweeps=["1.color=1..5"]), journal,
                   BatchOptions(out_dir=tmp_path, tick_s=0.001), reporter=reported.append)
    endpoints = [InstantEndpoint("w0", d), InstantEndpoint("w1", d)]
    d.prepare(endpoints)
    try:
        result = d.run()
    finally:
        journal.close()
    assert (result.snapshot.done, result.gave_up) == (5, None)
    assert all(e.started and e.stopped for e in endpoints)
    assert sum(isinstance(e, JobDone) for e in reported) == 5
