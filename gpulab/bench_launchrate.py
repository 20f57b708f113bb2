"""How fast one CPU core drives one GPU when 1, 2, 4... GPUs are driven at once (issue #9).

A small ComfyUI job (SD1.5, 512x512) on an H100/H200 is bound by the Python
thread that launches its kernels, not by the GPU. So a fleet of N workers can
only scale N-fold if one core keeps its speed while N cores are busy. This
measures that ceiling without ComfyUI: N processes, one per GPU, each pinned to
its own block of CPUs (as `--placement auto` does), all started together, each
timing

    python   a pure-Python loop                  (the interpreter's speed on that core)
    launch   tiny CUDA kernels, synced every 500 (launch overhead: what bounds a small job)

Per-process rate with N running, divided by the rate with one running, is the
best per-worker efficiency any placement can reach on this machine; N times it
is the ceiling for the fleet's speed-up. Writes launchrate.json/.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHILD = r"""
import json, os, sys, time
os.sched_setaffinity(0, [int(c) for c in sys.argv[1].split(",")])
seconds = float(sys.argv[2])
import torch
x = torch.zeros(16, device="cuda")
for _ in range(2000):
    x.add_(1)
torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.readline()

def python_loop():
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10000):
            n += 1
    return n / seconds

def launches():
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(500):
            x.add_(1)
        torch.cuda.synchronize()
        n += 500
    return n / seconds

print(json.dumps({"python_per_s": python_loop(), "launches_per_s": launches()}), flush=True)
"""


def gpu_count() -> int:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def blocks(cpus: list[int], n: int) -> list[list[int]]:
    size = len(cpus) // n
    return [cpus[i * size:(i + 1) * size] for i in range(n)]


def run_round(python: str, gpus: int, total_gpus: int, seconds: float) -> list[dict[str, Any]]:
    cpus = sorted(os.sched_getaffinity(0))
    children = []
    # Each GPU's block is the one a full fleet would give it, so N=1 and N=4 use the same cores.
    for gpu, block in list(enumerate(blocks(cpus, total_gpus)))[:gpus]:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu), "OMP_NUM_THREADS": "4"}
        children.append(subprocess.Popen([python, "-c", CHILD, ",".join(map(str, block)), str(seconds)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("a child did not start")
    for child in children:  # all go within a millisecond of each other
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    rates = []
    for child in children:
        out, _ = child.communicate(timeout=4 * seconds + 60)
        rates.append(json.loads(out.strip().splitlines()[-1]))
    return rates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    p.add_argument("--budget-s", type=float, default=120)
    p.add_argument("--seconds", type=float, default=3.0)
    args, _ = p.parse_known_args()  # run_all's BENCH_ARGS may carry other benches' options
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    total = gpu_count()
    counts = sorted({n for n in (1, 2, 4, 8) if n <= total} | {total})
    t0 = time.monotonic()
    results: dict[str, Any] = {"gpus": total, "cpus": len(os.sched_getaffinity(0)), "seconds": args.seconds, "rounds": {}}
    for n in counts:
        if time.monotonic() - t0 > args.budget_s - (4 * args.seconds + 30):
            break
        results["rounds"][n] = run_round(python, n, total, args.seconds)
        print(json.dumps({n: results["rounds"][n]}), flush=True)
    one = results["rounds"].get(1, [{}])[0]
    rows = ["| GPUs driven at once | python loop, per process | launches/s, per process | launch efficiency | fleet ceiling |",
            "| --- | --- | --- | --- | --- |"]
    for n, rates in results["rounds"].items():
        py = sum(r["python_per_s"] for r in rates) / len(rates)
        ln = sum(r["launches_per_s"] for r in rates) / len(rates)
        eff = ln / one["launches_per_s"] if one else float("nan")
        rows.append(f"| {n} | {py / one['python_per_s']:.2f}x | {ln:,.0f} | {eff:.2f} | {n * eff:.2f}x |")
    md = "\n".join([
        f"# One core per GPU: launch rate with N GPUs driven at once ({total} GPUs, {results['cpus']} CPUs)", "",
        *rows, "",
        ("Each process pinned to its own CPU block, as `--placement auto` pins workers. "
         "Fleet ceiling = N x per-process launch rate / the rate with one running: "
         "the speed-up a launch-bound ComfyUI fleet could reach on this machine."),
    ]) + "\n"
    (out / "launchrate.json").write_text(json.dumps(results, indent=2))
    (out / "launchrate.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
