"""Wall time of ``comfyrig doctor --no-torch``, as a user runs it (a fresh process each time).

Target: under 1 s. The command runs against a small ComfyUI tree written to
a temporary folder (main.py, comfyui_version.py, comfy/cli_args.py, a
ComfyUI-MultiGPU pack) in dual mode, on 8 simulated GPUs, or with
--source nvml on this machine's real GPUs (NVML).

    python benchmarks/bench_doctor.py [--runs 10] [--source simulated|nvml]

Results are appended to benchmarks/results/doctor.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

FLAGS = ("--listen", "--port", "--lowvram", "--novram", "--reserve-vram", "--disable-smart-memory", "--cuda-device")


def write_tree(root: Path) -> Path:
    comfy = root / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "comfyui_version.py").write_text('__version__ = "0.3.76"\n')
    (comfy / "comfy" / "cli_args.py").write_text("\n".join(f'parser.add_argument("{f}")' for f in FLAGS) + "\n")
    (comfy / "comfy" / "model_management.py").write_text("")
    pack = comfy / "custom_nodes" / "ComfyUI-MultiGPU"
    pack.mkdir(parents=True)
    (pack / "pyproject.toml").write_text('[project]\nname = "comfyui-multigpu"\nversion = "2.5.11"\n')
    (pack / "__init__.py").write_text("import comfy.model_management\n")
    (comfy / ".env").write_text("CUDA_VISIBLE_DEVICES=0,1\nCOMFYUI_ARGS=\"--lowvram\"\n")
    return comfy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", choices=("simulated", "nvml"), default="simulated")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "doctor.txt")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "CUDA_", "PYTORCH_", "COMFYRIG_"))}
    if args.source == "simulated":
        gpus = [{"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559} for _ in range(8)]
        env["COMFYRIG_FAKE_GPUS"] = json.dumps({"driver_version": "580.00", "cuda_driver_version": "13.0", "gpus": gpus})
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        comfy = write_tree(Path(tmp))
        command = [sys.executable, "-m", "comfyrig", "doctor", "--no-torch", "--json", "--comfyui-dir", str(comfy)]
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
            times.append(time.perf_counter() - start)
            checks = json.loads(result.stdout)["checks"]
        times = times[1:]  # the first run warms the page cache and writes .pyc files
    summary = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", "warn", "fail", "skip")}
    worst = max(times)
    verdict = "PASS" if worst < 1.0 else "FAIL"
    report = (
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}  bench_doctor  {verdict} (target < 1 s without the torch check)\n"
        f"  machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; source: {args.source}\n"
        f"  {args.runs} runs of 'comfyrig doctor --no-torch --json': median {statistics.median(times):.3f} s, "
        f"max {worst:.3f} s; last run: {summary}\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as f:
        f.write(report + "\n")
    sys.stdout.write(report)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
