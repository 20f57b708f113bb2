"""A batch of 1,000,000 jobs: time to the first submitted job, and peak memory (issue 16, item 18).

    python benchmarks/bench_batch_scale.py                 # 1,000,000 jobs, result in benchmarks/results/batch-scale.txt
    python benchmarks/bench_batch_scale.py --jobs 200000   # a smaller run, printed only

The dispatcher runs in a fresh interpreter (this script, mode child) with in-process workers that
answer at once; the first SubmitPrompt stops the clock and asks the dispatcher to stop (as Ctrl-C
would), so what is measured is comfyrig's start of a large batch: expansion of the variations,
the journal, the scheduler. Peak RSS from getrusage includes the interpreter and comfyrig.
Targets: first job within 10 s, peak RSS under 200 MB. Not a test: a result as text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}},
}


def child(jobs: int) -> None:
    import resource
    import signal

    from comfyrig.batch.dispatcher import BatchOptions, Dispatcher
    from comfyrig.batch.journal import Journal
    from comfyrig.batch.protocol import PromptCompleted, PromptStarted, SubmitPrompt, WorkerCommand, WorkerUp
    from comfyrig.batch.variations import build_spec
    from comfyrig.comfy.workflow import workflow_from_json

    t0 = time.perf_counter()
    first: list[float] = []

    class Worker:
        def __init__(self, name: str, dispatcher: Dispatcher) -> None:
            self.name, self.url, self.label, self._d = name, f"inproc://{name}", "instant", dispatcher

        def start(self) -> None:
            self._d.post(WorkerUp(self.name))

        def send(self, command: WorkerCommand) -> None:
            if isinstance(command, SubmitPrompt):
                if not first:
                    first.append(time.perf_counter() - t0)
                    self._d.signal(signal.SIGINT)
                    self._d.signal(signal.SIGINT)  # the second: stop now, do not wait for running jobs
                self._d.post(PromptStarted(self.name, command.prompt_id))
                self._d.post(PromptCompleted(self.name, command.prompt_id))

        def stop(self) -> None:
            pass

        def join(self, timeout: float) -> None:
            pass

    out = Path(tempfile.mkdtemp())
    wf = workflow_from_json(json.loads(json.dumps(WORKFLOW)), "bench")
    spec = build_spec(wf, sweeps=[f"1.color=0..{jobs - 1}"])
    journal = Journal(out / "journal.sqlite")
    dispatcher = Dispatcher(wf, spec, journal, BatchOptions(out_dir=out, job_timeout_s=None, drain_timeout_s=0.5))
    dispatcher.prepare([Worker(f"w{n}", dispatcher) for n in range(4)])
    t_prepared = time.perf_counter() - t0
    dispatcher.run()
    journal.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"jobs": jobs, "prepare_s": t_prepared, "first_submit_s": first[0] if first else None,
                      "peak_rss_mib": peak, "journal_mib": (out / "journal.sqlite").stat().st_size / 2**20}))


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
    text = (f"{r['jobs']:,} jobs: first job submitted after {r['first_submit_s']:.1f} s (prepare {r['prepare_s']:.1f} s); "
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
