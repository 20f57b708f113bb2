"""`comfyrig batch` on real GPUs: jobs/min on 1 GPU, 2 GPUs, and one ComfyUI with both visible (issue #5).

The same GPU-bound batch (random-weight SD1.5, 512x512, 20 steps, a seed
sweep) is dispatched by `comfyrig batch --url ...` to servers started by
`comfyrig launch` (so start-up is not in the numbers):

    one-gpu      comfyrig launch --single 0 --placement auto
    two-gpus     comfyrig launch --workers --gpus 0,1            (placement auto)
    seed-dual    comfyrig launch --dual                          (both GPUs visible to one ComfyUI)

then once more with `comfyrig batch` starting its own fleet on both GPUs
(the default path, start-up included). Each batch writes its journal and
outputs; the output files are counted. Writes batch_scaling.json/.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from gpulab.bench_fleet import Launch, comfyrig, gpu_count
from gpulab.paths import WORKFLOWS

SETUPS = [
    ("one-gpu", ["--single", "0", "--placement", "auto"], 1),
    ("two-gpus", ["--workers", "--gpus", "0,1"], 2),
    ("seed-dual", ["--dual"], 1),
    ("all-gpus", ["--workers"], 0),  # 0: every GPU of the machine; only run with more than two
]


def batch(args: list[str], out_dir: Path, timeout: float) -> dict[str, Any]:
    start = time.perf_counter()
    run = subprocess.run([*comfyrig(), "batch", str(WORKFLOWS / "sd15_txt2img_512.json"), "--out", str(out_dir),
                          "--json", "--plain", *args], capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - start
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        return {"exit": run.returncode, "error": (run.stdout + run.stderr)[-2000:]}
    outputs = list((out_dir / "outputs").rglob("*.png")) if (out_dir / "outputs").exists() else []
    return {
        "exit": run.returncode,
        "command_wall_s": round(wall, 2),
        "report_wall_s": report.get("wall_s"),
        "done": report.get("done"),
        "failed": report.get("failed"),
        "jobs_per_min": report.get("jobs_per_min"),
        "png_files": len(outputs),
        "workers": report.get("workers"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    p.add_argument("--budget-s", type=float, default=300)
    p.add_argument("--jobs", type=int, default=32)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    comfy_dir, python = os.environ["COMFYUI_DIR"], os.environ["COMFYUI_PYTHON"]
    work = Path("/tmp/comfyrig-batch-bench")
    work.mkdir(exist_ok=True)
    gpus = gpu_count()
    only = os.environ.get("BATCH_SETUPS", "").split()
    results: dict[str, Any] = {"jobs": args.jobs, "gpus": gpus, "setups": {}}
    sweep = ["--sweep", f"3.seed=1..{args.jobs}"]
    for n, (name, flags, servers) in enumerate(SETUPS):
        if (only and name not in only) or (servers == 0 and gpus <= 2):
            continue
        servers = servers or gpus
        launch = Launch([*comfyrig(), "launch", "--plain", "--comfyui-dir", comfy_dir, "--python", python,
                         "--port", str(8400 + 10 * n), "--log-dir", str(work / "logs"), *flags], work / f"{name}.launch.log")
        try:
            urls = launch.ready_urls(servers, 240)
            # One warm-up job per server loads the model (not counted), in its own journal.
            batch(["--sweep", f"3.seed=100001..{100000 + servers}", *[a for u in urls for a in ("--url", u)]], work / f"{name}-warm", 300)
            record = batch([*sweep, *[a for u in urls for a in ("--url", u)]], work / name, 600)
        except Exception as exc:
            record = {"error": str(exc)[-2000:]}
        finally:
            launch.stop()
        results["setups"][name] = record
        print(json.dumps({name: record}), flush=True)
    # The default path: comfyrig batch starts (and stops) its own fleet.
    if not only or "own-fleet" in only:
        own = batch(["--gpus", "0,1", "--comfyui-dir", comfy_dir, "--python", python, "--sweep", "3.seed=500..515"], work / "own-fleet", 400)
        results["setups"]["own-fleet (16 jobs, start-up included)"] = own
    one = results["setups"].get("one-gpu", {}).get("jobs_per_min")
    dual = results["setups"].get("seed-dual", {}).get("jobs_per_min")
    rows = ["| setup | jobs/min | vs 1 GPU | vs seed dual | done/failed | png files |", "| --- | --- | --- | --- | --- | --- |"]
    for name, rec in results["setups"].items():
        jpm = rec.get("jobs_per_min")
        rows.append(f"| {name} | {jpm if jpm is not None else rec.get('error', '-')[:60]} | "
                    f"{f'{jpm / one:.2f}x' if jpm and one else '-'} | {f'{jpm / dual:.2f}x' if jpm and dual else '-'} | "
                    f"{rec.get('done')}/{rec.get('failed')} | {rec.get('png_files')} |")
    md = "\n".join([f"# comfyrig batch scaling (sd15 512x512 20 steps, {args.jobs} jobs)", "", *rows, "",
                    "Targets (issue #5): 2 GPUs >= 1.9x 1 GPU and >= 1.8x seed dual.", f"Machine: {gpus} GPUs."]) + "\n"
    (out / "batch_scaling.json").write_text(json.dumps(results, indent=2))
    (out / "batch_scaling.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
