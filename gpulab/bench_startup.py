"""On the GPU machine: `comfyrig gpus` vs `import torch`, and launch-to-ready overhead (issues #2, #3).

Runs benchmarks/bench_gpus.py, bench_launch.py (single GPU mode), bench_doctor.py
and bench_monitor.py with this machine's torch and NVML; writes startup.md (both tables) to --out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from gpulab.paths import REPO


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    p.add_argument("--budget-s", type=float, default=200)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    parts = []
    for name, extra in (
        ("bench_gpus.py", ["--torch-python", python, "--rounds", str(args.rounds)]),
        ("bench_launch.py", ["--mode", "single", "--rounds", "3"]),
        ("bench_doctor.py", ["--source", "nvml", "--runs", "10"]),
        ("bench_monitor.py", ["--source", "nvml", "--seconds", "20", "--gpus", "2", "--instances", "2"]),
    ):
        target = out / f"{Path(name).stem}.md"
        result = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *extra, "--out", str(target)],
                                capture_output=True, text=True, timeout=max(args.budget_s / 2, 60), check=False)
        print(result.stdout, result.stderr[-2000:], flush=True)
        parts.append(target.read_text() if target.exists() else f"{name} failed: {result.stderr[-1500:]}\n")
    (out / "startup.md").write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
