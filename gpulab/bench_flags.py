"""Why is current ComfyUI slower here? ComfyUI's own flags side by side (issue #17, item 4).

Real ComfyUI 0.24.0 (and 0.3.76 as the baseline), the random-weight SD1.5 checkpoint,
512x512, 20 steps, CFG 7, one job at a time, end to end (POST /prompt until its
/history entry), on one GPU. Every configuration is started at once (each its own
ComfyUI on GPU 0, its own port, output, temp, user folder and database), then loaded
one at a time, round after round, in a rotating order: the ratios are taken within a
round (the lent VMs drift), then their median.

Each round gives each configuration 20-step jobs and 1-step jobs (distinct seeds, so
only the sampler, decode and save run again): the 1-step time is the per-job fixed cost
(VAE decode, PNG, caching, model checks), (t20 - t1) / 19 the cost of one sampling step
(two UNet passes at CFG 7).

Configurations (FLAG_CONFIGS or --configs picks some, in this order):

    v076            0.3.76, python main.py                      the old baseline
    v024            0.24.0, python main.py                      current defaults
    v024-nodyn      --disable-dynamic-vram                      estimate-based loading (no comfy-aimdo)
    v024-nopin      --disable-pinned-memory
    v024-classic    --cache-classic                             not the RAM-pressure cache
    v024-noasync    --disable-async-offload
    v024-nomalloc   --disable-cuda-malloc                       torch's caching allocator, not cudaMallocAsync
    v024-highvram   --highvram                                  (also turns dynamic VRAM off)
    v024-gpuonly    --gpu-only                                  (also turns dynamic VRAM off)
    v024-omp1       OMP_NUM_THREADS=1                           CPU threads
    v024-alloff     --disable-dynamic-vram --disable-pinned-memory --cache-classic --disable-async-offload
    v076-rig        comfyrig launch --single 0 (0.3.76)         as the 1.26 s / 0.95 s figures were taken
    v024-rig        comfyrig launch --single 0 (0.24.0)
    v024-rig-nodyn  comfyrig launch --single 0 -- --disable-dynamic-vram

Writes flags.json and flags.md to --out. Needs COMFYUI_DIR (0.3.76), COMFYUI_EXTRA_DIRS
(holding the 0.24.0 tree) and COMFYUI_PYTHON, as gpulab/remote_setup.sh exports them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpulab import comfy_http

# name: (tree version, launcher, ComfyUI flags, extra environment)
CONFIGS: dict[str, tuple[str, str, list[str], dict[str, str]]] = {
    "v076": ("0.3.76", "direct", [], {}),
    "v024": ("0.24.0", "direct", [], {}),
    "v024-nodyn": ("0.24.0", "direct", ["--disable-dynamic-vram"], {}),
    "v024-nopin": ("0.24.0", "direct", ["--disable-pinned-memory"], {}),
    "v024-classic": ("0.24.0", "direct", ["--cache-classic"], {}),
    "v024-noasync": ("0.24.0", "direct", ["--disable-async-offload"], {}),
    "v024-nomalloc": ("0.24.0", "direct", ["--disable-cuda-malloc"], {}),
    "v024-highvram": ("0.24.0", "direct", ["--highvram"], {}),
    "v024-gpuonly": ("0.24.0", "direct", ["--gpu-only"], {}),
    "v024-omp1": ("0.24.0", "direct", [], {"OMP_NUM_THREADS": "1"}),
    "v024-alloff": ("0.24.0", "direct", ["--disable-dynamic-vram", "--disable-pinned-memory", "--cache-classic",
                                         "--disable-async-offload"], {}),
    "v076-rig": ("0.3.76", "comfyrig", [], {}),
    "v024-rig": ("0.24.0", "comfyrig", [], {}),
    "v024-rig-nodyn": ("0.24.0", "comfyrig", ["--disable-dynamic-vram"], {}),
}
BASELINE, OLD = "v024", "v076"
WORK = Path(os.environ.get("BENCH_FLAGS_WORK", "/tmp/bench-flags"))
LOG_FACTS = ("dynamicvram", "dynamic vram", "aimdo", "pinned memory", "attention", "cudamallocasync", "device:",
             "vram state", "ram pressure", "async", "comfy-kitchen", "comfy_kitchen", "comfyui version", "pytorch version")


def tree(version: str) -> Path:
    dirs = [os.environ["COMFYUI_DIR"], *filter(None, os.environ.get("COMFYUI_EXTRA_DIRS", "").split(":"))]
    for d in dirs:
        text = (Path(d) / "comfyui_version.py").read_text() if (Path(d) / "comfyui_version.py").is_file() else ""
        if re.search(rf"""__version__\s*=\s*["']{re.escape(version)}["']""", text):
            return Path(d)
    raise FileNotFoundError(f"no ComfyUI {version} among {dirs}")


def comfyrig() -> list[str]:
    exe = os.environ.get("COMFYRIG_BIN") or shutil.which("comfyrig")
    return [exe] if exe else [sys.executable, "-m", "comfyrig"]


class Server:
    """One ComfyUI, started directly (argv, no shell) or through comfyrig launch."""

    def __init__(self, index: int, name: str, spec: tuple[str, str, list[str], dict[str, str]], port: int, cpu: bool) -> None:
        version, launcher, flags, extra_env = spec
        self.name, self.port, self.launcher = name, port, launcher
        self.url = f"http://127.0.0.1:{port}"
        comfy_dir = tree(version)
        python = os.environ.get("COMFYUI_PYTHON", sys.executable)
        work = WORK / name
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        for sub in ("out", "temp", "user", "logs"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", **extra_env}
        cpu_flags = ["--cpu"] if cpu else []
        if launcher == "direct":
            env["CUDA_VISIBLE_DEVICES"] = "" if cpu else "0"
            argv = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port),
                    "--output-directory", str(work / "out"), "--temp-directory", str(work / "temp"),
                    "--user-directory", str(work / "user"),
                    "--database-url", f"sqlite:///{work / 'user' / 'comfyui.db'}", *cpu_flags, *flags]
        else:
            env.pop("CUDA_VISIBLE_DEVICES", None)
            argv = [*comfyrig(), "launch", "--plain", *(["--cpu"] if cpu else ["--single", "0"]),
                    "--comfyui-dir", str(comfy_dir), "--python", python, "--port", str(port),
                    "--log-dir", str(work / "logs"), "--restart", "no", "--",
                    "--output-directory", str(work / "out"), "--temp-directory", str(work / "temp"),
                    "--user-directory", str(work / "user"),
                    "--database-url", f"sqlite:///{work / 'user' / 'comfyui.db'}", *flags]
        self.argv = argv
        self.log = work / "server.log"
        self.started = time.monotonic()
        self.ready_s: float | None = None
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(argv, cwd=comfy_dir, env=env, stdout=f, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if comfy_http.probe(self.url) is not None:
                self.ready_s = round(time.monotonic() - self.started, 1)
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s: {self.tail()}")

    def text(self) -> str:
        logs = [self.log, *sorted((self.log.parent / "logs").glob("*.log"))]
        return "\n".join(p.read_text(errors="replace") for p in logs if p.is_file())

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def facts(self) -> list[str]:
        clean = re.sub(r"\x1b\[[0-9;]*m", "", self.text())
        seen: list[str] = []
        for line in clean.splitlines():
            low = line.lower()
            if any(k in low for k in LOG_FACTS) and line.strip() not in seen and len(seen) < 24:
                seen.append(line.strip()[:200])
        return seen

    def executed(self) -> list[float]:
        return [float(t) for t in re.findall(r"Prompt executed in ([0-9.]+) seconds", self.text())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def snapshot() -> dict[str, str]:
    """GPU memory per process and the machine's free RAM, as text (nvidia-smi, free)."""
    out = {}
    for key, cmd in (("gpu_apps", ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"]),
                     ("gpu", ["nvidia-smi", "--query-gpu=memory.used,memory.total,utilization.gpu,clocks.sm", "--format=csv,noheader"]),
                     ("ram", ["free", "-m"])):
        try:
            out[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[key] = str(exc)
    return out


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def r3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget-s", type=float, default=400)
    p.add_argument("--configs", default=os.environ.get("FLAG_CONFIGS", ""),
                   help="space-separated names (default: all)")
    p.add_argument("--rounds", type=int, default=int(os.environ.get("FLAG_ROUNDS", "5")))
    p.add_argument("--jobs", type=int, default=3, help="20-step jobs per configuration and round")
    p.add_argument("--short-jobs", type=int, default=2, help="1-step jobs per configuration and round")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--solo-rounds", type=int, default=3, help="rounds with only three servers left up")
    p.add_argument("--cpu", action="store_true", help="CPU servers (a rehearsal of the code path, not a result)")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)

    names = args.configs.split() or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configurations: {unknown}; known: {list(CONFIGS)}")
    workflow = comfy_http.patch(comfy_http.load_workflow("sd15_txt2img_512"), width=args.size, height=args.size,
                                steps=args.steps)
    short = comfy_http.patch(workflow, steps=1)

    record: dict[str, Any] = {"settings": {"configs": names, "rounds_asked": args.rounds, "jobs": args.jobs,
                                           "short_jobs": args.short_jobs, "steps": args.steps, "size": args.size,
                                           "cfg": workflow["3"]["inputs"]["cfg"], "cpu": args.cpu},
                              "configs": {}, "rounds": 0}
    servers: dict[str, Server] = {}
    try:
        for i, name in enumerate(names):
            try:
                servers[name] = Server(i, name, CONFIGS[name], 8600 + i, args.cpu)
            except FileNotFoundError as exc:
                record["configs"][name] = {"error": str(exc)}
        for name, srv in list(servers.items()):
            rec = record["configs"].setdefault(name, {})
            rec.update(flags=" ".join(CONFIGS[name][2]), env=CONFIGS[name][3], launcher=CONFIGS[name][1],
                       version=CONFIGS[name][0], t20=[], t1=[], per_round_t20=[], per_round_t1=[])
            try:
                srv.wait_ready(300)
                rec["ready_s"] = srv.ready_s
                for seed in (1, 2):  # the first loads the model, the second warms the kernels: not counted
                    t0 = time.perf_counter()
                    comfy_http.run(srv.url, comfy_http.patch(workflow, seed=seed), 300)
                    rec.setdefault("warmup_s", []).append(round(time.perf_counter() - t0, 3))
            except Exception as exc:
                rec["error"] = str(exc)[-1500:]
                srv.stop()
                del servers[name]
            print(f"[flags] {name}: ready {rec.get('ready_s')} s, warm-up {rec.get('warmup_s')} {rec.get('error', '')[:300]}",
                  flush=True)
        live = [n for n in names if n in servers]
        record["after_warmup"] = snapshot()
        seed = 1000
        t_rounds = time.monotonic()
        for r in range(args.rounds):
            if r and time.monotonic() + 1.2 * (time.monotonic() - t_rounds) / r > deadline:
                break
            order = live[r % len(live):] + live[: r % len(live)]  # rotate: no configuration always first
            for name in order:
                rec, srv = record["configs"][name], servers[name]
                t20, t1 = [], []
                try:
                    for _ in range(args.jobs):
                        seed += 1
                        t20.append(comfy_http.run(srv.url, comfy_http.patch(workflow, seed=seed), 240)[1])
                    for _ in range(args.short_jobs):
                        seed += 1
                        t1.append(comfy_http.run(srv.url, comfy_http.patch(short, seed=seed), 240)[1])
                except Exception as exc:
                    rec["error"] = str(exc)[-1500:]
                rec["t20"] += [round(t, 4) for t in t20]
                rec["t1"] += [round(t, 4) for t in t1]
                rec["per_round_t20"].append(r3(median(t20)))
                rec["per_round_t1"].append(r3(median(t1)))
            record["rounds"] = r + 1
            print(f"[flags] round {r + 1}: " + ", ".join(f"{n} {record['configs'][n]['per_round_t20'][-1]}" for n in live),
                  flush=True)
        # Solo: only the two defaults and the fastest 0.24 variant stay up (the others stopped, their
        # VRAM and RAM freed), in case many ComfyUIs on one GPU changed what dynamic VRAM or the
        # RAM-pressure cache decide.
        fast = sorted((median(record["configs"][n]["t20"]) or 1e9, n) for n in live if n.startswith("v024-"))
        solo = [n for n in (OLD, BASELINE, fast[0][1] if fast else None) if n in servers]
        for name in [n for n in live if n not in solo]:
            servers[name].stop()
        record["solo"] = {"configs": solo, "rounds": 0, "t20": {n: [] for n in solo}}
        time.sleep(3)
        record["solo"]["before"] = snapshot()
        for r in range(args.solo_rounds):
            if time.monotonic() + 20 > deadline:
                break
            for name in (solo[r % len(solo):] + solo[: r % len(solo)]):
                for _ in range(args.jobs):
                    seed += 1
                    record["solo"]["t20"][name].append(round(comfy_http.run(servers[name].url, comfy_http.patch(workflow, seed=seed), 240)[1], 4))
            record["solo"]["rounds"] = r + 1
    except Exception as exc:
        record["error"] = str(exc)[-1500:]
    finally:
        for name, srv in servers.items():
            srv.stop()
            rec = record["configs"][name]
            rec["log_facts"] = srv.facts()
            rec["server_executed_s"] = srv.executed()
            rec["argv"] = srv.argv
        # logs travel in one tarball made by run_all's summarize --pack (results.tar.gz): copy them under OUT
        logdir = args.out / "flags-logs"
        logdir.mkdir(exist_ok=True)
        for name, srv in servers.items():
            (logdir / f"{name}.log").write_text(srv.text())

    summarize(record)
    (args.out / "flags.json").write_text(json.dumps(record, indent=1))
    md = markdown(record)
    (args.out / "flags.md").write_text(md)
    print(md)
    return 0 if all("error" not in r for r in record["configs"].values()) else 1


def summarize(record: dict[str, Any]) -> None:
    configs = record["configs"]
    for rec in configs.values():
        t20, t1 = median(rec.get("t20", [])), median(rec.get("t1", []))
        rec["median_t20"], rec["median_t1"] = r3(t20), r3(t1)
        rec["per_step_ms"] = round(1000 * (t20 - t1) / (record["settings"]["steps"] - 1), 1) if t20 and t1 else None
        ex = rec.get("server_executed_s", [])
        rec["median_executed_s"] = r3(median(ex[2:]))  # without the two warm-up jobs
    for base, key in ((BASELINE, "vs_v024"), (OLD, "vs_v076")):
        b = configs.get(base, {}).get("per_round_t20", [])
        for rec in configs.values():
            pairs = [a / c for a, c in zip(rec.get("per_round_t20", []), b, strict=False) if a and c]
            if pairs:
                rec[key] = {"median": round(median(pairs), 3), "min": round(min(pairs), 3), "max": round(max(pairs), 3)}


def markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    lines = [(f"# ComfyUI flags side by side ({s['size']}x{s['size']}, {s['steps']} steps, CFG {s['cfg']}, one job at a time, "
             f"{record['rounds']} interleaved rounds of {s['jobs']} x {s['steps']}-step + {s['short_jobs']} x 1-step jobs each)"),
             "",
             ("Time per job end to end (POST /prompt until /history has it), median over every round; ratios are "
             "per round (paired), then their median (min-max). Per step = (t20 - t1) / 19; t1 = the fixed cost per job."),
             "",
             ("| configuration | version | launcher | flags / env | ready s | s/job 20 steps | vs 0.24 default | vs 0.3.76 | "
             "s/job 1 step | ms/step | ComfyUI 'executed in' s |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rec in record["configs"].items():
        def ratio(key: str, rec: dict[str, Any] = rec) -> str:
            r = rec.get(key)
            return f"{r['median']:.3f} ({r['min']:.2f}-{r['max']:.2f})" if r else "-"
        flags = " ".join([rec.get("flags", "")] + [f"{k}={v}" for k, v in rec.get("env", {}).items()]).strip()
        lines.append(f"| {name} | {rec.get('version', '-')} | {rec.get('launcher', '-')} | `{flags or 'defaults'}` | "
                     f"{rec.get('ready_s', '-')} | {rec.get('median_t20', rec.get('error', '-')[:60])} | {ratio('vs_v024')} | "
                     f"{ratio('vs_v076')} | {rec.get('median_t1', '-')} | {rec.get('per_step_ms', '-')} | "
                     f"{rec.get('median_executed_s', '-')} |")
    solo = record.get("solo")
    if solo and solo.get("rounds"):
        lines += ["", (f"## Solo: {', '.join(solo['configs'])} only, the other servers stopped ({solo['rounds']} rounds of "
                  f"{s['jobs']} jobs)"), "", "| configuration | s/job 20 steps (median) | all |", "| --- | --- | --- |"]
        for name, ts in solo["t20"].items():
            lines.append(f"| {name} | {r3(median(ts))} | {', '.join(f'{t:.3f}' for t in ts)} |")
    snap = record.get("after_warmup")
    if snap:
        lines += ["", "## GPU and RAM after the warm-up (every server up)", "", "```", snap.get("gpu", ""), snap.get("gpu_apps", ""),
                  snap.get("ram", ""), "```"]
    lines += ["", "## What each ComfyUI said at start (log lines about VRAM, pinning, attention, allocator)", ""]
    for name, rec in record["configs"].items():
        lines.append(f"- **{name}**: " + " / ".join(rec.get("log_facts", [])[:14]))
        if rec.get("error"):
            lines.append(f"  - error: {rec['error'][:400]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
