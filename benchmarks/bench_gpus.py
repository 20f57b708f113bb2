"""`comfyrig gpus` end to end vs listing GPUs through `import torch` (as the old launcher did).

Both are run as fresh processes, alternately, N rounds, in one run on one
machine; the table gives medians and the ratio. Usage:

    python benchmarks/bench_gpus.py --torch-python /path/to/python --rounds 10 [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TORCH_LISTING = (
    "import torch\n"
    "n = torch.cuda.device_count()\n"
    "print(n, [torch.cuda.get_device_name(i) for i in range(n)])\n"
)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed with {result.returncode}: {result.stderr[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--torch-python", default=sys.executable, help="an interpreter with torch installed")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here too")
    args = parser.parse_args()
    exe = shutil.which("comfyrig") or shutil.which("comfyrig", path=str(Path(sys.executable).parent))
    comfyrig = [exe] if exe else [sys.executable, "-m", "comfyrig"]
    env = {k: v for k, v in os.environ.items() if k != "COMFYRIG_FAKE_GPUS"}
    ours, torch_times = [], []
    timed([*comfyrig, "gpus", "--json"], env)  # warm the page cache for both, once
    timed([args.torch_python, "-c", TORCH_LISTING], env)
    for _ in range(args.rounds):
        ours.append(timed([*comfyrig, "gpus", "--json"], env))
        torch_times.append(timed([args.torch_python, "-c", TORCH_LISTING], env))
    a, b = statistics.median(ours), statistics.median(torch_times)
    probe = subprocess.run([*comfyrig, "gpus", "--json"], env=env, capture_output=True, text=True, check=False).stdout
    import json

    report = json.loads(probe)
    lines = [
        f"# `comfyrig gpus` vs `import torch` listing ({platform.node()}, {len(report['gpus'])} GPU(s) via {report['source']})",
        "",
        "| command | median s | min s | max s |",
        "| --- | --- | --- | --- |",
        f"| comfyrig gpus --json | {a:.3f} | {min(ours):.3f} | {max(ours):.3f} |",
        f"| python -c 'import torch; ...device_count()/get_device_name()' | {b:.3f} | {min(torch_times):.3f} | {max(torch_times):.3f} |",
        "",
        f"ratio (torch / comfyrig): {b / a:.1f}x over {args.rounds} alternating rounds; target: comfyrig <= 0.3 s and >= 10x.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
