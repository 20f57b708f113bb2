"""A batch of 1,000,000 jobs: time to the first submitted job, and peak memory (issue 16, item 18).

    python benchmarks/bench_batch_scale.py                 # 1,000,000 jobs, result in benchmarks/results/batch-scale.txt
    python benchmarks/bench_batch_scale.py --jobs 200000   # a smaller run, printed only

``run_batch`` (what ``comfyrig batch --url`` runs) runs in a fresh interpreter (this script, mode
child) with in-process workers that answer at once; the first SubmitPrompt stops the clock and
stops the batch (two Ctrl-C), so what is measured is comfyrig's start of a large batch: every
check before the first job, the expansion of the variations, the journal, the scheduler. Peak RSS from getrusage includes the interpreter and comfyrig.
Targets: first job within 10 s, peak RSS under 200 MB. Not a test: a result as text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
}


OBJECT_INFO = {
    "EmptyImage": {"input": {"required": {"width": ["INT", {"min": 1}], "height": ["INT", {"min": 1}],
                                          "batch_size": ["INT", {"min": 1}], "color": ["INT", {"min": 0}]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}},
}


def child(jobs: int) -> None:
    """``run_batch`` itself, as ``comfyrig batch --url`` calls it: every check before the first job
    (the output folder, the journal's identity, the values against the schema) is in the figure."""
    import resource
    import signal

    from comfyrig.batch.protocol import Emit, OutputSink, PromptCompleted, PromptStarted, SubmitPrompt, WorkerCommand, WorkerUp
    from comfyrig.batch.run import BatchRequest, run_batch

    t0 = time.perf_counter()
    first: list[float] = []
    handlers: list[object] = []

    class Worker:
        def __init__(self, name: str, emit: Emit) -> None:
            self.name, self.url, self.label, self._emit = name, f"http://{name}:8188", "instant", emit

        def start(self) -> None:
            self._emit(WorkerUp(self.name))

        def send(self, command: WorkerCommand) -> None:
            if isinstance(command, SubmitPrompt):
                if not first:
                    first.append(time.perf_counter() - t0)
                    stop = handlers[0]
                    stop(signal.SIGINT)  # type: ignore[operator]
                    stop(signal.SIGINT)  # type: ignore[operator]  # the second: do not wait for running jobs
                self._emit(PromptStarted(self.name, command.prompt_id))
                self._emit(PromptCompleted(self.name, command.prompt_id))

        def stop(self) -> None:
            pass

        def join(self, timeout: float) -> None:
            pass

    class Backend:
        kind = "url"

        def members(self) -> list[tuple[str, str, str]]:
            return [(f"w{n}", f"http://w{n}:8188", "instant") for n in range(4)]

        def start(self, client_id: str, reporter: object = None) -> None:
            pass

        def endpoints(self, emit: Emit, sink: OutputSink) -> list[Worker]:
            return [Worker(name, emit) for name, _, _ in self.members()]

        def object_info(self, timeout_s: float) -> dict[str, object]:
            return json.loads(json.dumps(OBJECT_INFO))

        def stop(self) -> None:
            pass

    @contextlib.contextmanager
    def capture(handler: object) -> Iterator[None]:
        handlers.append(handler)
        yield

    tmp = Path(tempfile.mkdtemp())
    (tmp / "wf.json").write_text(json.dumps(WORKFLOW))
    request = BatchRequest(workflow=tmp / "wf.json", out_dir=tmp / "out", sweeps=(f"1.color=0..{jobs - 1}",))
    run_batch(request, Backend(), lambda event: None, signals=capture)  # type: ignore[arg-type]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"jobs": jobs, "prepare_s": first[0] if first else None, "first_submit_s": first[0] if first else None,
                      "peak_rss_mib": peak, "journal_mib": sum(p.stat().st_size for p in (tmp / "out").glob("journal*")) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", choices=["run", "child"], default="run")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.mode == "child":
        child(args.jobs)
        return
    done = subprocess.run([sys.executable, __file__, "child", "--jobs", str(args.jobs)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(done.stderr)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    probe = "import comfyrig.batch.run, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    base = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    text = (f"{r['jobs']:,} jobs: first job submitted after {r['first_submit_s']:.1f} s; "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (interpreter + comfyrig imported: {float(base.stdout):.0f} MiB); "
            f"journal {r['journal_mib']:.0f} MiB")
    print(text)
    if args.jobs == 1_000_000:
        header = (f"# comfyrig batch scale ({time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, "
                  f"{os.cpu_count()} cores, {platform.machine()}); python benchmarks/bench_batch_scale.py\n"
                  "# targets: first job within 10 s, peak RSS under 200 MB\n")
        (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
        (ROOT / "benchmarks" / "results" / "batch-scale.txt").write_text(header + text + "\n")


if __name__ == "__main__":
    main()
