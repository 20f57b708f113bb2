"""A DisTorch2 allocation planned by `comfyrig plan`, loaded for real by ComfyUI-MultiGPU (issue #7).

`comfyrig plan` is asked to fit the random-weight SD1.5 checkpoint onto two
GPUs that it is told (COMFYRIG_FAKE_GPUS) have only --fake-mib of memory
each, so it must split the diffusion model across both GPUs and RAM; it
rewrites the txt2img workflow's loader into the ComfyUI-MultiGPU node with
that allocation. Then real ComfyUI 0.3.76 with ComfyUI-MultiGPU (bundle's
multigpu.tar.xz, commit c5e3e6a) runs that workflow on the real GPUs under
`comfyrig launch --gpus 0,1`. Recorded: the plan, whether the job ran
(no OOM), DisTorch's own log lines about where blocks went, and the memory
ComfyUI held on each GPU. Writes distorch.json and distorch.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from gpulab import comfy_http
from gpulab.bench_fleet import Launch, comfyrig, free_port
from gpulab.paths import BUNDLE, WORKFLOWS


def gpu_memory_of(pids: set[int]) -> dict[int, int]:
    import pynvml

    pynvml.nvmlInit()
    try:
        used: dict[int, int] = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in pids and isinstance(proc.usedGpuMemory, int):
                    used[i] = used.get(i, 0) + proc.usedGpuMemory // 2**20
        return used
    finally:
        pynvml.nvmlShutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    p.add_argument("--budget-s", type=float, default=200)
    p.add_argument("--fake-mib", type=int, default=2600)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(os.environ["COMFYUI_DIR"])
    python = os.environ["COMFYUI_PYTHON"]
    result: dict[str, Any] = {"fake_mib": args.fake_mib}
    bundle = BUNDLE / "multigpu.tar.xz"
    if not bundle.exists():
        raise SystemExit("bundle/multigpu.tar.xz is missing: build the bundle with --multigpu-src")
    # A separate ComfyUI with the node pack, so other benchmarks stay without it.
    comfy = Path("/tmp/comfyui-multigpu")
    if not (comfy / "custom_nodes" / "ComfyUI-MultiGPU" / "__init__.py").exists() or not (comfy / "comfy" / "ldm" / "models").is_dir():
        shutil.rmtree(comfy, ignore_errors=True)
        # Only the checkout's own top-level data folders stay behind (comfy/ldm/models is code).
        top = {"models", "output", "user", "temp"}
        shutil.copytree(base, comfy, ignore=lambda d, names: [n for n in names if Path(d) == base and n in top])
        (comfy / "models").symlink_to(base / "models")
        with tarfile.open(bundle) as tar:
            tar.extractall(comfy / "custom_nodes")
    checkpoint = base / "models" / "checkpoints" / "sd15_random.safetensors"
    rewritten = out / "distorch_workflow.json"
    fake = json.dumps([{"name": "NVIDIA H200", "memory_total_mib": args.fake_mib}] * 2)
    plan = subprocess.run(
        [*comfyrig(), "plan", str(checkpoint), "--gpus", "0,1", "--json", "--comfyui-dir", str(comfy),
         "--workflow", str(WORKFLOWS / "sd15_txt2img_512.json"), "--write", str(rewritten)],
        env={**os.environ, "COMFYRIG_FAKE_GPUS": fake}, capture_output=True, text=True, timeout=60, check=False,
    )
    result["plan_exit"] = plan.returncode
    try:
        planned = json.loads(plan.stdout)
    except json.JSONDecodeError:
        result["plan_error"] = (plan.stdout + plan.stderr)[-2000:]
        planned = {}
    result["plan"] = {k: planned.get(k) for k in ("headline", "verdict", "distorch", "loaders", "launch")}
    if plan.returncode not in (0,) or not rewritten.exists():
        (out / "distorch.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return 1
    logs = Path("/tmp/comfyrig-distorch-logs")
    logs.mkdir(exist_ok=True)
    port = free_port()
    launch = Launch([*comfyrig(), "launch", "--plain", "--gpus", "0,1", "--comfyui-dir", str(comfy), "--python", python,
                     "--port", str(port), "--log-dir", str(logs)], logs / "comfyrig.log")
    try:
        (url,) = launch.ready_urls(1, 240)
        result["multigpu_loaded"] = any("ComfyUI-MultiGPU is loaded" in line for line in launch.lines)
        workflow = json.loads(rewritten.read_text())
        t0 = time.perf_counter()
        entry, seconds = comfy_http.run(url, workflow, 300)
        result["first_job_s"] = round(seconds, 2)
        _, again = comfy_http.run(url, comfy_http.patch(workflow, seed=7), 300)
        result["second_job_s"] = round(again, 2)
        result["images"] = comfy_http.images(entry)
        pids = {int(x) for x in re.findall(r"started pid (\d+)", "\n".join(launch.lines))}
        result["gpu_memory_mib_by_index"] = gpu_memory_of(pids)
        result["ok"] = True
        del t0
    except Exception as exc:
        result["ok"] = False
        result["error"] = str(exc)[-3000:]
    finally:
        result["comfyrig_exit"] = launch.stop()
    lines = launch.lines
    result["distorch_log"] = [line for line in lines if re.search(r"DisTorch|distorch|Allocation|cuda:\d.*%|Device\s+\|", line)][:60]
    result["oom"] = any("out of memory" in line.lower() for line in lines)
    (out / "distorch.json").write_text(json.dumps(result, indent=2))
    md = [
        "# DisTorch2 allocation from `comfyrig plan`, loaded by real ComfyUI-MultiGPU",
        "",
        f"- plan (told each GPU has {args.fake_mib} MiB): {result['plan'].get('headline')}",
        f"- allocation: `{(result['plan'].get('distorch') or [{}])[0].get('expert_mode_allocations')}`",
        f"- loader: `{(result['plan'].get('loaders') or [{}])[0].get('node')}`",
        f"- ComfyUI-MultiGPU loaded: {result.get('multigpu_loaded')}; job ran: {result.get('ok')}; OOM: {result['oom']}",
        f"- job seconds: first {result.get('first_job_s')}, second {result.get('second_job_s')}",
        f"- memory ComfyUI held per GPU (MiB, NVML): {result.get('gpu_memory_mib_by_index')}",
        "",
        "DisTorch's log lines:",
        "```",
        *result["distorch_log"][:40],
        "```",
    ]
    (out / "distorch.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
