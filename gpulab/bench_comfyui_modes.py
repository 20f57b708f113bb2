#!/usr/bin/env python3
"""How real ComfyUI behaves under each GPU-visibility mode, and what throughput each layout gives.

Uses only real ComfyUI (``$COMFYUI_DIR`` run by ``$COMFYUI_PYTHON``, as set up by
``remote_setup.sh``) and NVML; comfyrig itself is not involved, so these numbers
are the ground truth comfyrig's modes are judged against.

Part A, one fresh ComfyUI per mode -- ``CUDA_VISIBLE_DEVICES`` = ``0,1``, ``0``,
``1``, ``1,0`` and CPU (empty + ``--cpu``), always with
``CUDA_DEVICE_ORDER=PCI_BUS_ID``: time to ready (``/system_stats`` answers), the
devices ``/system_stats`` lists, a cold and a warm sd15_txt2img_512 job (the CPU
mode runs cpu_blur and a 64x64, 2-step sd15 instead: 512x512 on a CPU takes
minutes), then the GPU memory NVML attributes to that ComfyUI's pid on each
physical GPU.

Part B, images/min over ``--jobs`` sd15 512x512 20-step jobs, one job in flight
per server, distinct seeds (no cache hits): one ComfyUI on GPU 0 and one with
both GPUs visible (each on its part-A server, already warm), then two ComfyUIs,
one per GPU, each taking the next job whenever it is free.  NVML samples GPU
utilisation meanwhile.

Writes ``modes.json`` (after every step, so a timeout keeps what was measured)
and ``modes.md`` to ``--out`` (default ``$OUT``, else ``./gpu-results``).
``--cpu-only`` runs the same flow with every server on ``--cpu`` (for testing the
harness on a machine without GPUs; tiny jobs advised: ``--size 64 --steps 1``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpulab import comfy_http

LOG_DIR = Path("/tmp/comfyrig-bench-logs")
PID_FILE = LOG_DIR / "pids"  # one ComfyUI pid (= its process group) a line, for run_all.sh's clean-up
LOG_KEYS = ("Set cuda device", "Total VRAM", "pytorch version", "Set vram state", "Device:", "ComfyUI version",
            "IMPORT FAILED", "Traceback", "Error", "error:")
MiB = 2**20


# --------------------------------------------------------------------- NVML


class Nvml:
    """Thin NVML wrapper; every method degrades to empty answers without NVML."""

    def __init__(self) -> None:
        self.ok = False
        self.error = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nv = pynvml
            self.count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(self.count)]
            self.ok = True
        except Exception as e:  # no driver, no library, no GPU: all mean "no NVML here"
            self.count = 0
            self.handles = []
            self.error = f"{type(e).__name__}: {e}"

    def _s(self, v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    def inventory(self) -> list[dict[str, Any]]:
        out = []
        for i, h in enumerate(self.handles):
            mem = self.nv.nvmlDeviceGetMemoryInfo(h)
            out.append({"index": i, "name": self._s(self.nv.nvmlDeviceGetName(h)),
                        "pci_bus_id": self._s(self.nv.nvmlDeviceGetPciInfo(h).busId),
                        "uuid": self._s(self.nv.nvmlDeviceGetUUID(h)), "memory_total_mib": mem.total // MiB})
        return out

    def driver(self) -> str:
        return self._s(self.nv.nvmlSystemGetDriverVersion()) if self.ok else ""

    def used_mib(self) -> list[int]:
        return [self.nv.nvmlDeviceGetMemoryInfo(h).used // MiB for h in self.handles]

    def processes(self) -> list[dict[int, int | None]]:
        """Per GPU: {pid: used MiB or None when the driver hides it}."""
        out = []
        for h in self.handles:
            procs: dict[int, int | None] = {}
            for p in self.nv.nvmlDeviceGetComputeRunningProcesses(h):
                used = getattr(p, "usedGpuMemory", None)
                procs[p.pid] = None if used is None else used // MiB
            out.append(procs)
        return out

    def utilization(self) -> list[int]:
        return [self.nv.nvmlDeviceGetUtilizationRates(h).gpu for h in self.handles]


class UtilSampler:
    """Samples GPU utilisation (%) and memory used every `period` s in a thread."""

    def __init__(self, nvml: Nvml, period: float = 0.25) -> None:
        self.nvml, self.period = nvml, period
        self.util: list[list[int]] = []
        self.mem: list[list[int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.util.append(self.nvml.utilization())
                self.mem.append(self.nvml.used_mib())
            except Exception:
                return

    def __enter__(self) -> UtilSampler:
        if self.nvml.ok:
            self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._t.is_alive():
            self._t.join()

    def summary(self) -> dict[str, Any]:
        if not self.util:
            return {}
        n = len(self.util[0])
        return {"samples": len(self.util),
                "mean_util_pct": [round(statistics.mean(s[i] for s in self.util), 1) for i in range(n)],
                "max_mem_used_mib": [max(s[i] for s in self.mem) for i in range(n)]}


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_counter = itertools.count()


@dataclass
class Server:
    name: str
    cvd: str
    cpu: bool
    comfy_dir: Path
    python: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready_s: float | None = None
    log_path: Path = field(init=False)
    argv: list[str] = field(init=False)

    def __post_init__(self) -> None:
        n = next(_counter)
        self.log_path = LOG_DIR / f"{n:02d}-{self.name}.log"
        self.argv = [self.python, "main.py", "--port", str(self.port), "--listen", "127.0.0.1",
                     "--output-directory", f"/tmp/out-{n}"] + (["--cpu"] if self.cpu else [])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ, CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=self.cvd, PYTHONUNBUFFERED="1")
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started = time.perf_counter()
        # argv list, no shell; own session so stop() can signal the whole group.
        self.proc = subprocess.Popen(self.argv, cwd=self.comfy_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        with PID_FILE.open("a") as f:
            f.write(f"{self.proc.pid}\n")

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = comfy_http.probe(self.url, timeout=1.0)
            if stats is not None:
                self.ready_s = time.perf_counter() - self.started
                return stats
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: ComfyUI exited with {self.proc.returncode} before ready")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: not ready after {timeout:.0f} s")

    def stop(self, grace: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        try:
            # SIGTERM, not SIGINT: a process started from a background shell
            # inherits SIGINT as ignored, and then ComfyUI never sees Ctrl-C
            # (seen here: still alive 15 s after SIGINT, gone 2 s after SIGTERM).
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass
        return self.proc.returncode

    def log_excerpt(self, tail: int = 25) -> dict[str, list[str]]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        # dict.fromkeys: ComfyUI prints some start-up lines twice; keep the first of each.
        keys = list(dict.fromkeys(ln.strip()[:200] for ln in lines if any(k in ln for k in LOG_KEYS)))
        return {"key_lines": keys[:40], "tail": [ln[:200] for ln in lines[-tail:]]}


def wait_all_ready(servers: list[Server], timeout: float) -> None:
    """Poll every server until each answers, so each ready_s is its own (not queued behind another)."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for s in list(pending):
            if comfy_http.probe(s.url, timeout=1.0) is not None:
                s.ready_s = time.perf_counter() - s.started
                pending.remove(s)
            elif s.proc is not None and s.proc.poll() is not None:
                raise RuntimeError(f"{s.name}: ComfyUI exited with {s.proc.returncode} before ready")
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:.0f} s: {[s.name for s in pending]}")
        time.sleep(0.1)


# -------------------------------------------------------------------- bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.comfy_dir = Path(args.comfyui_dir)
        self.python = args.python
        self.nvml = Nvml()
        self.deadline = time.monotonic() + args.budget_s
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        sd15 = comfy_http.load_workflow("sd15_txt2img_512")
        self.sd15 = comfy_http.patch(sd15, steps=args.steps, width=args.size, height=args.size)
        self.sd15_cpu = comfy_http.patch(sd15, steps=2, width=64, height=64)
        self.blur = comfy_http.load_workflow("cpu_blur")
        self.seed = itertools.count(1000)
        self.result: dict[str, Any] = {
            "benchmark": "comfyui_modes",
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"hostname": platform.node(), "nproc": os.cpu_count(), "python": self.python},
            "nvml": {"ok": self.nvml.ok, "error": self.nvml.error, "driver": self.nvml.driver(),
                     "gpus": self.nvml.inventory() if self.nvml.ok else []},
            "settings": {"jobs": args.jobs, "steps": args.steps, "size": args.size, "budget_s": args.budget_s,
                         "cpu_only": args.cpu_only, "workflow": "sd15_txt2img_512",
                         "checkpoint": "sd15_random.safetensors (random fp16 weights, SD1.5 layout)"},
            "modes": [],
            "throughput": [],
            "notes": [],
        }

    # -- helpers
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        (self.out / "modes.json").write_text(json.dumps(self.result, indent=2) + "\n")
        (self.out / "modes.md").write_text(render_md(self.result))

    def job(self, server: Server, wf: dict[str, Any], timeout: float) -> float:
        wf = comfy_http.patch(wf, seed=next(self.seed)) if any("seed" in n["inputs"] for n in wf.values()) else wf
        _entry, secs = comfy_http.run(server.url, wf, timeout)
        return secs

    def make(self, name: str, cvd: str, cpu: bool) -> Server:
        return Server(name, cvd, cpu or self.args.cpu_only, self.comfy_dir, self.python)

    def memory(self, pids: dict[str, int], baseline: list[int]) -> dict[str, Any]:
        if not self.nvml.ok:
            return {}
        try:
            procs, used = self.nvml.processes(), self.nvml.used_mib()
        except Exception as e:  # e.g. NVML_ERROR_NOT_SUPPORTED in some containers
            return {"error": f"{type(e).__name__}: {e}"}
        per_gpu = []
        for i, seen in enumerate(procs):
            per_gpu.append({
                "gpu": i,
                "process_mib": {name: seen.get(pid) if pid in seen else 0 for name, pid in pids.items()},
                "device_used_mib": used[i],
                "device_delta_mib": used[i] - baseline[i],
                "all_pids": {str(k): v for k, v in seen.items()},
            })
        matched = any(pid in seen for seen in procs for pid in pids.values())
        anyone = any(seen for seen in procs)
        return {"per_gpu": per_gpu,
                "pid_match": matched if anyone else None}  # None: NVML lists no process at all

    # -- part A
    def mode(self, name: str, cvd: str, cpu: bool, throughput_label: str | None) -> None:
        rec: dict[str, Any] = {"mode": name, "cuda_visible_devices": cvd, "cpu_flag": cpu or self.args.cpu_only}
        self.result["modes"].append(rec)
        if self.left() < 45:
            rec["skipped"] = f"budget: {self.left():.0f} s left"
            self.save()
            return
        baseline = self.nvml.used_mib() if self.nvml.ok else []
        srv = self.make(name, cvd, cpu)
        rec["argv"] = srv.argv[1:]
        try:
            srv.start()
            stats = srv.wait_ready(min(150.0, self.left()))
            rec["ready_s"] = round(srv.ready_s or 0, 2)
            rec["system_stats"] = {"devices": stats.get("devices"),
                                   "pytorch_version": stats.get("system", {}).get("pytorch_version"),
                                   "comfyui_version": stats.get("system", {}).get("comfyui_version")}
            if cpu:  # the CPU mode proper: 512x512 sd15 would take minutes there
                rec["blur_job_s"] = round(self.job(srv, self.blur, 60), 3)
                rec["sd15_64px_2step_cold_s"] = round(self.job(srv, self.sd15_cpu, min(180.0, self.left())), 2)
                rec["sd15_64px_2step_warm_s"] = round(self.job(srv, self.sd15_cpu, min(120.0, self.left())), 2)
            else:
                rec["sd15_cold_s"] = round(self.job(srv, self.sd15, min(180.0, self.left())), 2)
                rec["sd15_warm_s"] = round(self.job(srv, self.sd15, min(60.0, self.left())), 2)
            rec["gpu_memory"] = self.memory({name: srv.proc.pid}, baseline) if srv.proc else {}
            self.save()
            if throughput_label:
                self.throughput(throughput_label, [srv])
        except Exception as e:  # record and go on: one broken mode must not lose the others
            rec["error"] = f"{type(e).__name__}: {e}"[:3000]
        finally:
            rec["exit_code"] = srv.stop()
            rec["log"] = srv.log_excerpt()
            self.save()

    # -- part B
    def throughput(self, label: str, servers: list[Server]) -> None:
        rec: dict[str, Any] = {"config": label, "servers": [s.name for s in servers],
                               "cuda_visible_devices": [s.cvd for s in servers], "jobs": self.args.jobs}
        self.result["throughput"].append(rec)
        per_job_guess = 3.0 * self.args.jobs / len(servers)
        if self.left() < min(per_job_guess, 60):
            rec["skipped"] = f"budget: {self.left():.0f} s left"
            self.save()
            return
        todo = iter(range(self.args.jobs))
        lock = threading.Lock()
        done: list[dict[str, Any]] = []
        errors: list[str] = []
        stop_at = time.monotonic() + max(10.0, self.left() - 15)

        def worker(srv: Server) -> None:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(todo, None)
                    seed = next(self.seed)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    comfy_http.run(srv.url, comfy_http.patch(self.sd15, seed=seed), min(120.0, stop_at - time.monotonic()))
                except Exception as e:
                    errors.append(f"{srv.name} job {i}: {type(e).__name__}: {e}"[:500])
                    return
                with lock:
                    done.append({"job": i, "server": srv.name, "start": t0, "end": time.perf_counter()})

        with UtilSampler(self.nvml) as sampler:
            t_start = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t_start
        lat = [d["end"] - d["start"] for d in done]
        rec.update({
            "completed": len(done), "elapsed_s": round(elapsed, 2),
            "images_per_min": round(len(done) / elapsed * 60, 1) if done else 0.0,
            "job_s": {"mean": round(statistics.mean(lat), 3), "median": round(statistics.median(lat), 3),
                      "max": round(max(lat), 3)} if lat else {},
            "jobs_per_server": {s.name: sum(d["server"] == s.name for d in done) for s in servers},
            "nvml": sampler.summary(),
        })
        if errors:
            rec["errors"] = errors[:10]
        self.save()

    def pair(self) -> None:
        label = "two ComfyUIs, one per GPU"
        if self.left() < 60:
            self.result["throughput"].append({"config": label, "skipped": f"budget: {self.left():.0f} s left"})
            self.save()
            return
        servers = [self.make("pair_gpu_0", "0", False), self.make("pair_gpu_1", "1", False)]
        baseline = self.nvml.used_mib() if self.nvml.ok else []
        try:
            for s in servers:
                s.start()
            wait_all_ready(servers, min(150.0, self.left()))
            ready = {s.name: round(s.ready_s or 0, 2) for s in servers}
            # Warm both at once: the first job loads the checkpoint.
            warm: dict[str, float] = {}
            ts = [threading.Thread(target=lambda s=s: warm.__setitem__(s.name, self.job(s, self.sd15, 180)))
                  for s in servers]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.result.setdefault("pair", {}).update(ready_s=ready, warmup_s={k: round(v, 2) for k, v in warm.items()})
            if len(warm) != len(servers):
                raise RuntimeError(f"warm-up failed on { {s.name for s in servers} - set(warm)}")
            self.throughput(label, servers)
            self.result["pair"]["gpu_memory"] = self.memory({s.name: s.proc.pid for s in servers if s.proc}, baseline)
        except Exception as e:
            self.result.setdefault("pair", {})["error"] = f"{type(e).__name__}: {e}"[:3000]
        finally:
            codes = {s.name: s.stop() for s in servers}
            self.result.setdefault("pair", {}).update(exit_codes=codes, logs={s.name: s.log_excerpt(10) for s in servers})
            self.save()

    def run(self) -> int:
        n_gpu = 2 if self.args.cpu_only else self.nvml.count
        self.result["settings"]["gpus_seen"] = self.nvml.count
        # Most telling first, so a short budget cuts the least important: the
        # one-GPU baseline, the both-visible trap, the pair; then 1,0 / 1 / CPU.
        modes = [("gpu_0", "0", False, "one ComfyUI on GPU 0"),
                 ("gpus_0_1", "0,1", False, "one ComfyUI, both GPUs visible"),
                 ("pair", "", False, None),
                 ("gpus_1_0", "1,0", False, None),
                 ("gpu_1", "1", False, None),
                 ("cpu", "", True, None)]
        for name, cvd, cpu, tp in modes:
            if name == "pair":
                if n_gpu >= 2:
                    self.pair()
                else:
                    self.result["throughput"].append({"config": "two ComfyUIs, one per GPU",
                                                      "skipped": f"needs 2 GPUs, NVML sees {self.nvml.count}"})
                continue
            need = max((int(x) for x in cvd.split(",") if x), default=-1) + 1
            if need > n_gpu:
                self.result["modes"].append({"mode": name, "cuda_visible_devices": cvd,
                                             "skipped": f"needs {need} GPU(s), NVML sees {self.nvml.count}"})
                self.save()
                continue
            self.mode(name, cvd, cpu, tp)
        self.result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.save()
        broken = [m["mode"] for m in self.result["modes"] if "error" in m]
        return 1 if broken or "error" in self.result.get("pair", {}) else 0


# ----------------------------------------------------------------- markdown


def _fmt(v: Any, unit: str = "") -> str:
    if v is None or v == "":
        return "-"
    return f"{v}{unit}"


def _devices(stats: dict[str, Any] | None) -> str:
    devs = (stats or {}).get("devices") or []
    return "; ".join(f"{d.get('name', '?')}" for d in devs) or "-"


def _mem(rec: dict[str, Any], gpu: int) -> str:
    per = (rec.get("gpu_memory") or {}).get("per_gpu") or []
    if gpu >= len(per):
        return "-"
    g = per[gpu]
    proc = next(iter(g["process_mib"].values()), None)
    return f"{_fmt(proc)} (dev +{g['device_delta_mib']})"


def render_md(r: dict[str, Any]) -> str:
    s = r["settings"]
    gpus = r["nvml"]["gpus"]
    lines = ["# ComfyUI visibility modes and multi-GPU throughput", "",
             f"Started {r['started_utc']}; {len(gpus)} GPU(s): "
             + (", ".join(f"{g['index']}: {g['name']} ({g['pci_bus_id']}, {g['memory_total_mib']} MiB)" for g in gpus)
                or "none seen by NVML")
             + f"; driver {r['nvml'].get('driver') or '-'}; {r['host']['nproc']} CPUs.",
             f"Workflow sd15_txt2img_512: {s['size']}x{s['size']}, {s['steps']} steps, random-weight SD1.5 checkpoint."
             + (" **--cpu-only: every server ran on the CPU; not a GPU result.**" if s["cpu_only"] else ""), "",
             "## Modes (one fresh ComfyUI each)", "",
             "GPU columns: MiB NVML attributes to this ComfyUI's pid (and the device's change since before start).", "",
             "| mode | CUDA_VISIBLE_DEVICES | ready s | /system_stats devices | cold job s | warm job s | GPU 0 MiB | GPU 1 MiB | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in r["modes"]:
        cold = m.get("sd15_cold_s", m.get("sd15_64px_2step_cold_s"))
        warm = m.get("sd15_warm_s", m.get("sd15_64px_2step_warm_s"))
        note = m.get("skipped") or m.get("error", "")
        if m.get("cpu_flag") and "blur_job_s" in m:
            note = (note + f" cpu_blur {m['blur_job_s']} s; sd15 at 64x64, 2 steps").strip()
        lines.append(f"| {m['mode']} | `{m['cuda_visible_devices']}` | {_fmt(m.get('ready_s'))} | "
                     f"{_devices(m.get('system_stats'))} | {_fmt(cold)} | {_fmt(warm)} | {_mem(m, 0)} | {_mem(m, 1)} | "
                     f"{note[:160].replace('|', '/')} |")
    pid_match = [m.get("gpu_memory", {}).get("pid_match") for m in r["modes"] if m.get("gpu_memory")]
    if pid_match and not any(pid_match):
        lines += ["", "NVML listed no ComfyUI pid (a PID namespace hides them?): use the device deltas."]
    lines += ["", f"## Throughput ({s['jobs']} jobs, one in flight per server)", "",
              "| config | servers | done | elapsed s | images/min | vs one GPU | job s (median) | mean util % per GPU | jobs per server |",
              "|---|---|---|---|---|---|---|---|---|"]
    base = next((t.get("images_per_min") for t in r["throughput"] if t.get("config") == "one ComfyUI on GPU 0"), None)
    for t in r["throughput"]:
        if "skipped" in t:
            lines.append(f"| {t['config']} | - | - | - | - | - | - | - | {t['skipped']} |")
            continue
        ipm = t.get("images_per_min")
        ratio = f"{ipm / base:.2f}x" if base and ipm is not None else "-"
        util = t.get("nvml", {}).get("mean_util_pct")
        lines.append(f"| {t['config']} | {', '.join('`' + c + '`' for c in t.get('cuda_visible_devices', []))} | "
                     f"{t.get('completed', '-')}/{t['jobs']} | {_fmt(t.get('elapsed_s'))} | {_fmt(ipm)} | {ratio} | "
                     f"{_fmt(t.get('job_s', {}).get('median'))} | {_fmt(util)} | {_fmt(t.get('jobs_per_server'))} |")
        for e in t.get("errors", []):
            lines.append(f"|  | error: {e[:200].replace('|', '/')} | | | | | | | |")
    if r.get("interrupted"):
        lines += ["", f"**Interrupted:** {r['interrupted']}"]
    pair = r.get("pair")
    if pair:
        lines += ["", f"Pair: ready {pair.get('ready_s')}, warm-up {pair.get('warmup_s')}"
                  + (f"; error: {pair['error'][:300]}" if pair.get("error") else "")]
    for m in r["modes"]:
        keys = m.get("log", {}).get("key_lines")
        if keys:
            lines += ["", f"<details><summary>{m['mode']}: ComfyUI log lines</summary>", "", "```"]
            lines += [*keys[:15], "```", "</details>"]
    return "\n".join(lines) + "\n"


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui-dir", default=os.environ.get("COMFYUI_DIR", "/tmp/comfyui"))
    p.add_argument("--python", default=os.environ.get("COMFYUI_PYTHON", sys.executable))
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    p.add_argument("--jobs", type=int, default=24)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--budget-s", type=float, default=300.0, help="stop starting new steps after this")
    p.add_argument("--cpu-only", action="store_true", help="every server with --cpu (harness test, not a result)")
    args = p.parse_args(argv)
    if not (Path(args.comfyui_dir) / "main.py").is_file():
        print(f"bench_comfyui_modes: no ComfyUI at {args.comfyui_dir} (run remote_setup.sh)", file=sys.stderr)
        return 2
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*"):
        old.unlink()
    # timeout(1) sends SIGTERM: turn it into an exception so every `finally` stops its ComfyUI.
    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args)
    try:
        rc = bench.run()
    except KeyboardInterrupt:
        bench.result["interrupted"] = "SIGTERM/SIGINT: the remaining steps did not run"
        bench.save()
        rc = 130
    print((Path(args.out) / "modes.md").read_text())
    return rc


if __name__ == "__main__":
    sys.exit(main())
