"""Throughput of ComfyUI configurations started by comfyrig itself (issues #4, #9).

Real ComfyUI, the random-weight SD1.5 checkpoint, 512x512, 20 steps, one job
in flight per server, the same jobs (distinct seeds, so nothing is cached)
for every configuration, all in one run on one machine:

    seed-dual      comfyrig --dual --placement none          one ComfyUI, both GPUs visible (old dual mode)
    one-default    comfyrig --single 0 --placement none      one ComfyUI on GPU 0, default threads
    one-placed     comfyrig --single 0 --placement auto      one ComfyUI on GPU 0, pinned + thread budget
    fleet-none     comfyrig --workers --placement none       one ComfyUI per GPU, defaults
    fleet-auto     comfyrig --workers --placement auto       one ComfyUI per GPU, pinned + thread budget
    fleet-all-*    the same two on every GPU of the machine (4 on nvidia-h100-x4)

With --jobs-per-server each server gets the same amount of work, so every
configuration runs about as long (a 4-GPU fleet would finish 24 jobs in a few
seconds, too short to read a ratio from).

Writes fleet.json and fleet.md to --out. Needs COMFYUI_DIR/COMFYUI_PYTHON
(gpulab/remote_setup.sh exports them) and comfyrig on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gpulab import comfy_http

CONFIGS: list[tuple[str, list[str]]] = [
    ("one-default", ["--single", "0", "--placement", "none"]),
    ("fleet-auto", ["--workers", "--gpus", "0,1", "--placement", "auto"]),
    ("seed-dual", ["--dual", "--placement", "none"]),
    ("one-placed", ["--single", "0", "--placement", "auto"]),
    ("fleet-none", ["--workers", "--gpus", "0,1", "--placement", "none"]),
    ("fleet-auto-t2", ["--workers", "--gpus", "0,1", "--threads-per-worker", "2"]),
    ("fleet-auto-t8", ["--workers", "--gpus", "0,1", "--threads-per-worker", "8"]),
    ("fleet-all-auto", ["--workers", "--placement", "auto"]),
    ("fleet-all-none", ["--workers", "--placement", "none"]),
    ("fleet-all-t2", ["--workers", "--threads-per-worker", "2"]),
    ("fleet-all-t8", ["--workers", "--threads-per-worker", "8"]),
    ("one-passive", ["--single", "0", "--placement", "auto"]),
    ("fleet-all-passive", ["--workers", "--placement", "auto"]),
    # Diagnostics for a fleet that scales less than N-fold: is it the worker's CPU block
    # (one worker confined to a fleet-sized block), or the other workers running at once
    # (the whole fleet started, only the first one given jobs)?
    ("one-16cpus", ["--single", "0", "--cpus-per-worker", "16"]),
    ("fleet-all-one-loaded", ["--workers", "--placement", "auto"]),
]
LOAD_FIRST_ONLY = {"fleet-all-one-loaded"}
TARGETS = ("Targets (issue #9): fleet-auto >= 1.9x one placed worker and >= 2.3x seed dual; "
           "on 4 GPUs fleet-all-auto >= 3.8x one placed worker.")


def gpu_count() -> int:
    """The machine's GPUs, as comfyrig itself counts them (NVML)."""
    out = subprocess.run([*comfyrig(), "gpus", "--json"], capture_output=True, text=True, check=True).stdout
    return len(json.loads(out)["gpus"])


def server_count(flags: list[str], gpus: int) -> int:
    if "--workers" not in flags:
        return 1
    if "--gpus" in flags:
        return len(flags[flags.index("--gpus") + 1].split(","))
    return gpus


def topology() -> dict[str, Any]:
    """Hyperthread siblings and NUMA nodes, to read the placement results against."""
    from collections import Counter

    root = Path("/sys/devices/system/cpu")
    siblings = Counter()
    for topo in root.glob("cpu[0-9]*/topology/core_cpus_list"):
        siblings[topo.read_text().strip()] += 1
    nodes = {p.name: (p / "cpulist").read_text().strip() for p in Path("/sys/devices/system/node").glob("node[0-9]*")}
    return {"cores": sorted(siblings), "numa": nodes, "cpus": os.cpu_count()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def comfyrig() -> list[str]:
    exe = shutil.which("comfyrig")
    return [exe] if exe else [sys.executable, "-m", "comfyrig"]


class Launch:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout, open(self.log, "w") as f:
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                f.write(line)

    def ready_urls(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            urls = re.findall(r"READY (http://127\.0\.0\.1:\d+)", "\n".join(self.lines))
            if len(urls) >= count:
                return urls[:count]
            if self.proc.poll() is not None:
                raise RuntimeError(f"comfyrig exited {self.proc.returncode}: " + "\n".join(self.lines[-20:]))
            time.sleep(0.1)
        raise TimeoutError("not ready: " + "\n".join(self.lines[-20:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=5)
        return int(self.proc.returncode)


def run_jobs(urls: list[str], workflow: dict[str, Any], seeds: list[int], timeout: float, vary: str = "seed") -> dict[str, Any]:
    """One job in flight per server; each server takes the next seed when it frees up."""
    lock = threading.Lock()
    queue = list(seeds)
    per_server: dict[str, list[float]] = {u: [] for u in urls}
    errors: list[str] = []

    def worker(url: str) -> None:
        while True:
            with lock:
                if not queue or errors:
                    return
                seed = queue.pop(0)
            try:
                _, seconds = comfy_http.run(url, comfy_http.patch(workflow, **{vary: seed}), timeout)
                per_server[url].append(seconds)
            except Exception as exc:  # recorded, ends the configuration
                errors.append(f"{url}: {exc}")
                return

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = sum(len(v) for v in per_server.values())
    return {
        "wall_s": round(wall, 2),
        "jobs": done,
        "images_per_min": round(60 * done / wall, 1) if wall else None,
        "per_server_jobs": {u: len(v) for u, v in per_server.items()},
        "per_server_mean_s": {u: round(sum(v) / len(v), 3) for u, v in per_server.items() if v},
        "errors": errors,
    }


EXTRA_ENV: dict[str, dict[str, str]] = {
    # libgomp's idle threads spin before they sleep; PASSIVE makes them sleep at once,
    # which leaves more of the package's power to the threads that launch kernels.
    "one-passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "fleet-all-passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def executed_in(log: Path, last: int) -> float | None:
    """Mean of ComfyUI's own "Prompt executed in N seconds" over its last `last` jobs."""
    if not log.is_file():
        return None
    found = re.findall(r"Prompt executed in ([0-9.]+) seconds", log.read_text(errors="replace"))
    times = [float(t) for t in found[-last:]] if last else []
    return round(sum(times) / len(times), 3) if times else None


def run_config(n: int, name: str, flags: list[str], servers: int, workflow: dict[str, Any], jobs: int,
               vary: str, logs: Path) -> dict[str, Any]:
    comfy_dir, python = os.environ["COMFYUI_DIR"], os.environ["COMFYUI_PYTHON"]
    port = free_port() if servers == 1 else 8300 + 10 * n
    argv = [*comfyrig(), "launch", "--plain", "--comfyui-dir", comfy_dir, "--python", python,
            "--port", str(port), "--log-dir", str(logs), *flags]
    env_before = dict(os.environ)
    os.environ.update(EXTRA_ENV.get(name, {}))
    try:
        launch = Launch(argv, logs / f"{name}.comfyrig.log")
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    record: dict[str, Any] = {"flags": " ".join(flags), "env": EXTRA_ENV.get(name, {}), "servers": servers}
    try:
        started = time.perf_counter()
        urls = launch.ready_urls(servers, 240)
        record["ready_s"] = round(time.perf_counter() - started, 2)
        record["placement"] = [line.split("mode, ", 1)[-1] for line in launch.lines if "CUDA_VISIBLE_DEVICES=" in line and "comfyrig:" in line]
        for i, url in enumerate(urls):  # the first job per server loads the model: not counted
            comfy_http.run(url, comfy_http.patch(workflow, **{vary: 10_000 + i}), 240)
        loaded = urls[:1] if name in LOAD_FIRST_ONLY else urls
        record.update(run_jobs(loaded, workflow, list(range(jobs * len(loaded) // len(urls))), 240, vary))
    except Exception as exc:
        record["error"] = str(exc)[-2000:]
    finally:
        record["comfyrig_exit"] = launch.stop()
    # ComfyUI's own execution time per job, next to the client's submit-to-history time.
    record["server_executed_mean_s"] = {
        url: executed_in(logs / f"comfyrig-{url.rsplit(':', 1)[1]}.log", count)
        for url, count in record.get("per_server_jobs", {}).items()
    }
    return record


def table(configs: dict[str, dict[str, Any]]) -> list[str]:
    base = configs.get("one-placed", {}).get("images_per_min") or configs.get("one-default", {}).get("images_per_min")
    dual = configs.get("seed-dual", {}).get("images_per_min")
    rows = ["| configuration | comfyrig flags | servers | jobs | ready s | images/min | vs one placed GPU | vs seed dual | s/job (client) | s/job (ComfyUI) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rec in configs.items():
        ipm = rec.get("images_per_min")
        client = [v for v in rec.get("per_server_mean_s", {}).values() if v]
        server = [v for v in rec.get("server_executed_mean_s", {}).values() if v]
        flags = rec.get("flags", "") + "".join(f" {k}={v}" for k, v in rec.get("env", {}).items())
        rows.append(
            f"| {name} | `{flags}` | {rec.get('servers', '-')} | {rec.get('jobs', '-')} | {rec.get('ready_s', '-')} | "
            f"{ipm if ipm is not None else rec.get('error', rec.get('skipped', '-'))[:80]} | "
            f"{f'{ipm / base:.2f}x' if ipm and base else '-'} | {f'{ipm / dual:.2f}x' if ipm and dual else '-'} | "
            f"{f'{sum(client) / len(client):.3f}' if client else '-'} | {f'{sum(server) / len(server):.3f}' if server else '-'} |"
        )
    return rows


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def interleaved(names: list[str], by_name: dict[str, tuple[int, list[str]]], gpus: int, workflow: dict[str, Any],
                per_server: int, rounds: int, vary: str, logs: Path, deadline: float) -> dict[str, Any]:
    """Every configuration up at once, loaded one at a time, round after round.

    A lent VM's cores change speed from minute to minute (other tenants), by more
    than the differences measured here; rows taken one after another then compare
    different machines. Here each round loads every configuration in turn within
    a minute, and the ratios are taken per round (paired), then their median.
    Idle ComfyUI servers use no GPU and next to no CPU, so the others do not disturb
    the one being loaded.
    """
    comfy_dir, python = os.environ["COMFYUI_DIR"], os.environ["COMFYUI_PYTHON"]
    launches: dict[str, Launch] = {}
    urls: dict[str, list[str]] = {}
    record: dict[str, Any] = {"rounds": rounds, "jobs_per_server": per_server, "configs": {}}
    try:
        for name in names:
            n, flags = by_name[name]
            servers = server_count(flags, gpus)
            port = free_port() if servers == 1 else 8300 + 10 * n
            launches[name] = Launch([*comfyrig(), "launch", "--plain", "--comfyui-dir", comfy_dir, "--python", python,
                                     "--port", str(port), "--log-dir", str(logs), *flags], logs / f"{name}.interleaved.log")
            record["configs"][name] = {"flags": " ".join(flags), "servers": servers, "images_per_min": []}
        seed = 20_000
        for name, launch in launches.items():
            urls[name] = launch.ready_urls(record["configs"][name]["servers"], 300)
            record["configs"][name]["placement"] = [line.split("mode, ", 1)[-1] for line in launch.lines
                                                    if "CUDA_VISIBLE_DEVICES=" in line and "comfyrig:" in line]
            for url in urls[name]:  # loads the model: not counted
                seed += 1
                comfy_http.run(url, comfy_http.patch(workflow, **{vary: seed}), 300)
        rounds_start = time.monotonic()
        for r in range(rounds):
            if r and time.monotonic() + 1.3 * (time.monotonic() - rounds_start) / r > deadline:
                record["rounds"] = r  # no time for another whole round
                break
            for name in names:
                jobs = list(range(seed, seed + per_server * len(urls[name])))
                seed += len(jobs)
                result = run_jobs(urls[name], workflow, jobs, 240, vary)
                if result["errors"]:
                    raise RuntimeError(f"{name}: {result['errors'][0]}")
                record["configs"][name]["images_per_min"].append(result["images_per_min"])
    except Exception as exc:
        record["error"] = str(exc)[-2000:]
    finally:
        for launch in launches.values():
            launch.stop()
    configs = record["configs"]
    for base_name, key in (("one-placed", "vs_one_placed"), ("seed-dual", "vs_seed_dual")):
        base = configs.get(base_name, {}).get("images_per_min", [])
        for rec in configs.values():
            pairs = [a / b for a, b in zip(rec["images_per_min"], base, strict=True) if b]
            if pairs:
                rec[key] = {"median": round(median(pairs), 2), "min": round(min(pairs), 2), "max": round(max(pairs), 2)}
    return record


def interleaved_table(record: dict[str, Any]) -> list[str]:
    rows = ["| configuration | comfyrig flags | servers | images/min, each round | vs one placed GPU (median of rounds; min-max) | vs seed dual (median; min-max) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, rec in record["configs"].items():
        def ratio(key: str, rec: dict[str, Any] = rec) -> str:
            r = rec.get(key)
            return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})" if r else "-"
        rows.append(f"| {name} | `{rec['flags']}` | {rec['servers']} | {', '.join(f'{v:g}' for v in rec['images_per_min']) or '-'} | "
                    f"{ratio('vs_one_placed')} | {ratio('vs_seed_dual')} |")
    if record.get("error"):
        rows += ["", f"Error: {record['error'][:500]}"]
    return rows


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = int(value) if value.isdigit() else value
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    p.add_argument("--jobs", type=int, default=24)
    p.add_argument("--jobs-per-server", type=int, default=0, help="if set, each configuration runs this many jobs per server instead of --jobs")
    p.add_argument("--budget-s", type=float, default=360.0)
    p.add_argument("--workflow", default="sd15_txt2img_512")
    p.add_argument("--vary", default="seed", help="the input given a distinct value per job (defeats ComfyUI's cache)")
    p.add_argument("--second-set", nargs="*", default=[], metavar="INPUT=VALUE",
                   help="a second pass with these workflow inputs changed (e.g. width=1024 height=1024), "
                        "over the configurations in FLEET_SECOND_CONFIGS")
    p.add_argument("--second-jobs-per-server", type=int, default=8)
    p.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                   help="start every FLEET_CONFIGS configuration at once and load them in turn, ROUNDS times "
                        "(paired ratios on a machine whose speed drifts); --jobs-per-server per burst")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workflow = comfy_http.load_workflow(args.workflow)
    t0 = time.monotonic()
    gpus = gpu_count()
    results: dict[str, Any] = {"jobs": args.jobs, "jobs_per_server": args.jobs_per_server, "gpus": gpus,
                               "workflow": args.workflow, "configs": {}, "second_pass": {}, "cpu_topology": topology()}
    logs = Path("/tmp/comfyrig-fleet-logs")
    logs.mkdir(parents=True, exist_ok=True)
    by_name = {c[0]: (n, c[1]) for n, c in enumerate(CONFIGS)}

    def run_pass(names: list[str], into: dict[str, Any], wf: dict[str, Any], per_server: int, reserve: float) -> None:
        for name in names:
            n, flags = by_name[name]
            if time.monotonic() - t0 > args.budget_s - reserve:
                into[name] = {"skipped": "budget"}
                continue
            servers = server_count(flags, gpus)
            if name.startswith("fleet-all") and servers <= 2:
                into[name] = {"skipped": f"{gpus} GPUs: the same as the 2-GPU rows"}
                continue
            jobs = per_server * servers if per_server else args.jobs
            into[name] = run_config(n, name, flags, servers, wf, jobs, args.vary, logs)
            print(json.dumps({name: into[name]}), flush=True)

    only = os.environ.get("FLEET_CONFIGS", "").split() or [c[0] for c in CONFIGS]  # a subset, in this order
    if args.interleave:
        names = [n for n in only if not (n.startswith("fleet-all") and gpus <= 2)]
        results["interleaved"] = interleaved(names, by_name, gpus, workflow, args.jobs_per_server or 12, args.interleave, args.vary, logs,
                                             deadline=t0 + args.budget_s - 20)
        ran = results["interleaved"]["rounds"]  # fewer than asked when the budget ran short
        md = [(f"# Fleet throughput, interleaved ({args.workflow}, {ran} of {args.interleave} rounds of "
               f"{args.jobs_per_server or 12} jobs per server, one in flight per server, {gpus} GPUs)"), "",
              *interleaved_table(results["interleaved"]), "", TARGETS]
    else:
        second = os.environ.get("FLEET_SECOND_CONFIGS", "").split() if args.second_set else []
        run_pass(only, results["configs"], workflow, args.jobs_per_server, 60 + 50 * len(second))
        if second:
            run_pass(second, results["second_pass"], comfy_http.patch(workflow, **parse_sets(args.second_set)), args.second_jobs_per_server, 40)
        md = [
            (f"# Fleet throughput ({args.workflow}, "
             f"{f'{args.jobs_per_server} jobs per server' if args.jobs_per_server else f'{args.jobs} jobs'}, one in flight per server, {gpus} GPUs)"), "",
            *table(results["configs"]), "", TARGETS,
        ]
        if second:
            md += ["", f"## Second pass: {' '.join(args.second_set)}, {args.second_jobs_per_server} jobs per server", "", *table(results["second_pass"])]
    (out / "fleet.json").write_text(json.dumps(results, indent=2))
    (out / "fleet.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
