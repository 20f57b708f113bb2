"""Dispatcher throughput and memory, journal on.

    python benchmarks/bench_batch.py            # all three, results in benchmarks/results/batch.txt
    python benchmarks/bench_batch.py inprocess --jobs 5000 --workers 4
    python benchmarks/bench_batch.py fake --jobs 600 --workers 2
    python benchmarks/bench_batch.py memory --jobs 20000

- inprocess: workers are threads in this process that answer at once (started, completed, one
  small output file per job through the real LocalSink). What is measured is comfyrig's own
  path: variation expansion, the SQLite journal (a transaction per loop turn, WAL), the
  scheduler, prompt patching, output writing with sha256, manifest.jsonl.
- fake: the same against fake ComfyUI processes (tests/fake_comfyui) over HTTP and /ws with an
  instant workflow (EmptyImage 1x1 -> SaveImage): adds ComfyUI's API cost, which the fake's
  pure-Python aiohttp server dominates.
- memory: a 20,000-job batch in a fresh interpreter (inprocess workers); peak RSS from
  getrusage (includes the interpreter itself).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from comfyrig.batch.dispatcher import BatchOptions, Dispatcher
from comfyrig.batch.journal import Journal
from comfyrig.batch.protocol import (
    CollectOutputs,
    OutputsCollected,
    OutputSink,
    PromptCompleted,
    PromptStarted,
    StopWorker,
    SubmitPrompt,
    WorkerCommand,
    WorkerEvent,
    WorkerUp,
)
from comfyrig.batch.variations import build_spec
from comfyrig.batch.worker import HttpWorker, LocalSink
from comfyrig.comfy.workflow import workflow_from_json

ROOT = Path(__file__).resolve().parents[1]

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 60  # the size of a 1x1 PNG; content is not looked at


class InstantWorker:
    """An Endpoint that answers every prompt at once, from a thread like the real one."""

    def __init__(self, name: str, emit: Callable[[WorkerEvent], None], sink: OutputSink) -> None:
        self.name, self.url, self.label = name, f"inproc://{name}", "instant"
        self._emit, self._sink = emit, sink
        self._inbox: queue.Queue[WorkerCommand] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._emit(WorkerUp(self.name))

    def send(self, command: WorkerCommand) -> None:
        self._inbox.put(command)

    def stop(self) -> None:
        self._inbox.put(StopWorker())

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            match self._inbox.get():
                case StopWorker():
                    return
                case SubmitPrompt(prompt_id=pid):
                    self._emit(PromptStarted(self.name, pid))
                    self._emit(PromptCompleted(self.name, pid))
                case CollectOutputs(job=job, prompt_id=pid):
                    self._emit(OutputsCollected(self.name, pid, (self._sink(job, "3", 0, "bench_00001_.png", PNG),)))
                case _:
                    pass


def run_batch(out: Path, jobs: int, make: Callable[[Callable[[WorkerEvent], None], LocalSink], list]) -> dict:  # type: ignore[type-arg]
    wf = workflow_from_json(json.loads(json.dumps(WORKFLOW)), "bench")
    t0 = time.perf_counter()
    spec = build_spec(wf, sweeps=[f"1.color=0..{jobs - 1}"])
    journal = Journal(out / "journal.sqlite")
    dispatcher = Dispatcher(wf, spec, journal, BatchOptions(out_dir=out, job_timeout_s=None))
    sink = LocalSink(out)
    dispatcher.prepare(make(dispatcher.post, sink))
    t1 = time.perf_counter()
    result = dispatcher.run()
    t2 = time.perf_counter()
    journal.close()
    assert result.snapshot.done == jobs, result
    return {"jobs": jobs, "prepare_s": t1 - t0, "run_s": t2 - t1, "total_s": t2 - t0,
            "jobs_per_s": jobs / (t2 - t1), "jobs_per_s_incl_prepare": jobs / (t2 - t0)}


def bench_inprocess(jobs: int, workers: int) -> dict:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        r = run_batch(Path(tmp), jobs, lambda emit, sink: [InstantWorker(f"w{n}", emit, sink) for n in range(workers)])
    return {"mode": "inprocess", "workers": workers, **r}


def bench_fake(jobs: int, workers: int) -> dict:  # type: ignore[type-arg]
    # The fake's harness is a test helper, not part of the package: loaded by path, as the tests do.
    spec = importlib.util.spec_from_file_location("fake_comfyui_harness", ROOT / "tests" / "fake_comfyui" / "harness.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness
    spec.loader.exec_module(harness)
    running_fake = harness.running_fake

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        fakes = [stack.enter_context(running_fake(args=["--output-directory", f"{tmp}/fake{n}", "--disable-metadata"]))
                 for n in range(workers)]
        out = Path(tmp) / "out"
        out.mkdir()
        r = run_batch(out, jobs, lambda emit, sink: [
            HttpWorker(f"w{n}", f.url, "fake", client_id="bench", emit=emit, sink=sink) for n, f in enumerate(fakes)])
    return {"mode": "fake", "workers": workers, **r}


def bench_memory(jobs: int) -> dict:  # type: ignore[type-arg]
    # A fresh interpreter, so that peak RSS is this batch's alone: this script again, mode memory-child.
    out = subprocess.run([sys.executable, __file__, "memory-child", "--jobs", str(jobs)],
                         capture_output=True, text=True, check=True)
    base = subprocess.run([sys.executable, "-c", ("import comfyrig.batch.run, resource;"
                                                  "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")],
                          capture_output=True, text=True, check=True)
    return {"mode": "memory", **json.loads(out.stdout.strip().splitlines()[-1]), "baseline_rss_mib": float(base.stdout)}


def memory_child(jobs: int) -> None:
    import resource

    r = run_batch(Path(tempfile.mkdtemp()), jobs, lambda e, s: [InstantWorker(f"w{n}", e, s) for n in range(4)])
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r))


def line(r: dict) -> str:  # type: ignore[type-arg]
    if r["mode"] == "memory":
        return (f"memory     {r['jobs']:>6} jobs  peak RSS {r['peak_rss_mib']:.0f} MiB (interpreter + comfyrig imported: "
                f"{r['baseline_rss_mib']:.0f} MiB)  run {r['run_s']:.1f} s = {r['jobs_per_s']:.0f} jobs/s")
    return (f"{r['mode']:<10} {r['jobs']:>6} jobs  {r['workers']} workers  run {r['run_s']:.2f} s = {r['jobs_per_s']:.0f} jobs/s"
            f"  (with expansion + journal setup {r['prepare_s']:.2f} s: {r['jobs_per_s_incl_prepare']:.0f} jobs/s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", choices=["all", "inprocess", "fake", "memory", "memory-child"],
                        default="all")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    if args.mode == "memory-child":
        memory_child(args.jobs)
        return
    results = []
    if args.mode in ("all", "inprocess"):
        results.append(bench_inprocess(args.jobs or 5000, args.workers or 4))
    if args.mode in ("all", "fake"):
        results.append(bench_fake(args.jobs or 600, args.workers or 2))
    if args.mode in ("all", "memory"):
        results.append(bench_memory(args.jobs or 20000))
    lines = [line(r) for r in results]
    print("\n".join(lines))
    if args.mode == "all":
        header = (f"# comfyrig batch benchmark ({time.strftime('%Y-%m-%d')}, {platform.python_version()}, "
                  f"{os.cpu_count()} cores, {platform.machine()}); python benchmarks/bench_batch.py\n")
        results_dir = ROOT / "benchmarks" / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        note = ("# fake: 2 and 3 fake servers give the same rate: the fakes' pure-Python HTTP and PNG work saturate the\n"
                "# two cores; inprocess is the dispatcher's own ceiling (journal, scheduler, files, manifest).\n")
        (results_dir / "batch.txt").write_text(header + "\n".join(lines) + "\n" + note)


if __name__ == "__main__":
    main()
