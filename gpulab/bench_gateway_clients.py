"""One URL vs the worker itself, loaded by ComfyUI's own websocket example clients (issue #17, item 1).

``comfyrig launch --workers`` (the GPUs in --gpus; one on a single-GPU machine) starts real
ComfyUI workers behind comfyrig's gateway. Several clients run **the unmodified functions of
ComfyUI's ``script_examples/websockets_api_example.py``** (``queue_prompt``, ``get_history``,
``get_image``, ``get_images``; only its module-level ``server_address`` and ``client_id`` are
set per client, as a user edits them), each on its own websocket, submitting one prompt after
another concurrently, the random-weight SD1.5 512x512, 20 steps, CFG 7, distinct seeds.

Rounds alternate the target: through the gateway, then the same workers addressed directly
(each client given one worker, round robin, as a user with several URLs would), in an order
that flips each round; images/min per round, the ratio gateway/direct per round, then their
median. Target: the gateway at least 0.95x the workers addressed directly.

Writes gateway_clients.json and gateway_clients.md to --out. Needs COMFYUI_PYTHON, a ComfyUI
tree (--comfyui-dir, else the 0.24.0 one in COMFYUI_EXTRA_DIRS, else COMFYUI_DIR) and the
``websocket`` module (websocket-client, carried in the bundle).
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
import threading
import time
from pathlib import Path
from typing import Any

from gpulab import comfy_http

WORK = Path(os.environ.get("BENCH_GW_WORK", "/tmp/bench-gateway"))


def comfy_tree(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for d in filter(None, os.environ.get("COMFYUI_EXTRA_DIRS", "").split(":")):
        if "0.24" in Path(d).name:
            return Path(d)
    return Path(os.environ["COMFYUI_DIR"])


def example_client(comfy_dir: Path, server_address: str) -> dict[str, Any]:
    """A namespace holding the example's functions, as its module would after a user set
    ``server_address``: its source up to the sample prompt (the part that runs at import)."""
    src = (comfy_dir / "script_examples" / "websockets_api_example.py").read_text()
    head = src.split("\nprompt_text = ", 1)[0]
    ns: dict[str, Any] = {"__name__": "websockets_api_example"}
    exec(compile(head, "websockets_api_example.py", "exec"), ns)  # noqa: S102 - ComfyUI's own example
    ns["server_address"] = server_address
    return ns


def comfyrig() -> list[str]:
    exe = os.environ.get("COMFYRIG_BIN") or shutil.which("comfyrig")
    return [exe] if exe else [sys.executable, "-m", "comfyrig"]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_clients(comfy_dir: Path, addresses: list[str], clients: int, per_client: int, workflow: dict[str, Any],
                seed0: int, timeout: float) -> dict[str, Any]:
    import websocket  # websocket-client, as the example imports it

    latencies: list[float] = []
    images: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        address = addresses[i % len(addresses)]
        ns = example_client(comfy_dir, address)
        ws = websocket.WebSocket()
        try:
            ws.connect(f"ws://{address}/ws?clientId={ns['client_id']}", timeout=timeout)
            barrier.wait(timeout=60)
            for j in range(per_client):
                prompt = comfy_http.patch(workflow, seed=seed0 + i * per_client + j)
                t0 = time.perf_counter()
                out = ns["get_images"](ws, prompt)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    images.append(sum(len(b) for imgs in out.values() for b in imgs))
        except Exception as exc:  # recorded; the round is then not counted
            with lock:
                errors.append(f"client {i} via {address}: {type(exc).__name__}: {exc}"[:500])
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()
        finally:
            ws.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = len(latencies)
    return {"wall_s": round(wall, 2), "jobs": done, "images_per_min": round(60 * done / wall, 2) if wall and done else None,
            "latency_median_s": round(median(latencies) or 0, 3), "latency_max_s": round(max(latencies, default=0), 3),
            "images_with_bytes": sum(1 for b in images if b > 0), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget-s", type=float, default=300)
    p.add_argument("--gpus", default=os.environ.get("GW_GPUS", "0"))
    p.add_argument("--comfyui-dir", default=os.environ.get("GW_COMFYUI_DIR"))
    p.add_argument("--clients", type=int, default=int(os.environ.get("GW_CLIENTS", "4")))
    p.add_argument("--per-client", type=int, default=int(os.environ.get("GW_PER_CLIENT", "4")))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("GW_ROUNDS", "6")))
    p.add_argument("--port", type=int, default=8700)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--comfyui-args", default=os.environ.get("GW_COMFYUI_ARGS", ""),
                   help="ComfyUI flags for the workers (one string)")
    p.add_argument("--cpu", action="store_true", help="simulated GPUs, CPU workers: a rehearsal, not a result")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    comfy_dir = comfy_tree(args.comfyui_dir)
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    workflow = comfy_http.patch(comfy_http.load_workflow("sd15_txt2img_512"), width=args.size, height=args.size,
                                steps=args.steps)
    if WORK.exists():
        shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    gpus = [g for g in args.gpus.split(",") if g]
    comfy_flags = args.comfyui_args.split()
    env = dict(os.environ)
    if args.cpu:
        env["COMFYRIG_FAKE_GPUS"] = json.dumps([{"name": "Simulated GPU", "memory_total_mib": 24576}] * len(gpus))
        comfy_flags.append("--cpu")
    argv_ = [*comfyrig(), "launch", "--plain", "--workers", "--gpus", ",".join(gpus), "--port", str(args.port),
             "--comfyui-dir", str(comfy_dir), "--python", python, "--log-dir", str(WORK / "logs"),
             *(["--comfyui-args", " ".join(comfy_flags)] if comfy_flags else [])]
    record: dict[str, Any] = {"settings": {"gpus": gpus, "clients": args.clients, "per_client": args.per_client,
                                           "steps": args.steps, "size": args.size, "cfg": workflow["3"]["inputs"]["cfg"],
                                           "comfyui_dir": str(comfy_dir), "comfyui_args": comfy_flags, "argv": argv_,
                                           "client": "script_examples/websockets_api_example.py get_images()"},
                              "rounds": []}
    launch_log = WORK / "comfyrig.log"
    with open(launch_log, "w") as f:
        proc = subprocess.Popen(argv_, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    gateway = f"127.0.0.1:{args.port}"
    try:
        t0 = time.monotonic()
        workers: list[str] = []
        while time.monotonic() - t0 < 300:
            if proc.poll() is not None:
                raise RuntimeError(f"comfyrig exited {proc.returncode}: {launch_log.read_text()[-2000:]}")
            try:
                fleet = comfy_http.get(f"http://{gateway}", "/comfyrig/fleet", timeout=2)
                live = [b["url"] for b in fleet.get("backends", []) if b.get("live")]
                if len(live) == len(gpus):
                    workers = [re.sub(r"^https?://", "", u).rstrip("/") for u in live]
                    break
            except (OSError, comfy_http.ComfyError, ValueError):
                pass
            time.sleep(0.5)
        if not workers:
            raise TimeoutError(f"the gateway did not list {len(gpus)} live workers: {launch_log.read_text()[-2000:]}")
        record["ready_s"] = round(time.monotonic() - t0, 1)
        record["workers"] = workers
        print(f"[gw] ready in {record['ready_s']} s: gateway {gateway}, workers {workers}", flush=True)
        # Warm-up: the model loads on each worker (through the gateway, then directly).
        record["warmup"] = [run_clients(comfy_dir, [gateway], len(workers), 1, workflow, 1, 300),
                            run_clients(comfy_dir, workers, len(workers), 1, workflow, 100, 300)]
        seed = 10_000
        t_rounds = time.monotonic()
        for r in range(args.rounds):
            if r and time.monotonic() + 1.2 * (time.monotonic() - t_rounds) / r > deadline:
                break
            order = [("gateway", [gateway]), ("direct", workers)]
            if r % 2:
                order.reverse()
            row: dict[str, Any] = {}
            for name, addresses in order:
                res = run_clients(comfy_dir, addresses, args.clients, args.per_client, workflow, seed, 240)
                seed += args.clients * args.per_client
                row[name] = res
            g, d = row["gateway"]["images_per_min"], row["direct"]["images_per_min"]
            row["ratio"] = round(g / d, 3) if g and d and not row["gateway"]["errors"] and not row["direct"]["errors"] else None
            record["rounds"].append(row)
            print(f"[gw] round {r + 1}: gateway {g} img/min, direct {d} img/min, ratio {row['ratio']}", flush=True)
        try:
            record["fleet_after"] = comfy_http.get(f"http://{gateway}", "/comfyrig/fleet", timeout=5)
        except Exception as exc:
            record["fleet_after"] = str(exc)
    except Exception as exc:
        record["error"] = str(exc)[-2000:]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        logdir = args.out / "gateway-logs"
        logdir.mkdir(exist_ok=True)
        shutil.copyfile(launch_log, logdir / "comfyrig.log")
        for log in (WORK / "logs").glob("*.log"):
            shutil.copyfile(log, logdir / log.name)

    ratios = [r["ratio"] for r in record["rounds"] if r.get("ratio")]
    record["ratio_median"] = round(median(ratios), 3) if ratios else None
    record["ratio_min"] = round(min(ratios), 3) if ratios else None
    record["target_met"] = bool(ratios) and record["ratio_median"] >= 0.95
    (args.out / "gateway_clients.json").write_text(json.dumps(record, indent=1))
    md = markdown(record)
    (args.out / "gateway_clients.md").write_text(md)
    print(md)
    return 0 if ratios and "error" not in record else 1


def markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    lines = [(f"# Gateway vs the workers addressed directly ({len(s['gpus'])} GPU(s), {s['clients']} websocket clients x "
             f"{s['per_client']} prompts each per pass, {s['size']}x{s['size']}, {s['steps']} steps, CFG {s['cfg']})"),
             "",
             (f"Clients: the unmodified `get_images()` of ComfyUI's `{s['client'].split()[0]}` ({s['comfyui_dir']}), one "
             "websocket each, all submitting at once. Workers: `comfyrig launch --workers`"
             f"{' with ' + ' '.join(s['comfyui_args']) if s['comfyui_args'] else ''}."),
             "",
             "| round | gateway images/min | direct images/min | gateway / direct | gateway latency median s | direct latency median s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(record["rounds"], 1):
        g, d = r["gateway"], r["direct"]
        lines.append(f"| {i} | {g['images_per_min']} | {d['images_per_min']} | {r['ratio']} | {g['latency_median_s']} | "
                     f"{d['latency_median_s']} |")
    lines += ["", (f"Median gateway/direct over {len(record['rounds'])} rounds: **{record.get('ratio_median')}** "
              f"(lowest {record.get('ratio_min')}); target >= 0.95: {'met' if record.get('target_met') else 'NOT met'}.")]
    errs = [e for r in record["rounds"] for k in ("gateway", "direct") for e in r[k]["errors"]]
    if errs:
        lines += ["", "Errors:", *[f"- {e}" for e in errs[:10]]]
    if record.get("error"):
        lines += ["", f"Error: {record['error'][:1500]}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
