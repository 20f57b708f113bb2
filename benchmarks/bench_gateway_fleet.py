"""Throughput of N workers through the gateway vs the same workers addressed directly.

    .venv/bin/python benchmarks/bench_gateway_fleet.py [--workers 2] [--clients 4] [--rounds 4]
        [--jobs 40] [--job-seconds 0.2] [--out benchmarks/results/gateway-fleet.txt]

The workers are the fake ComfyUI (tests/fake_comfyui, real processes) spending --job-seconds per
job; the gateway is `comfyrig gateway --url ...` in its own process. Clients behave as ComfyUI's
websocket example does: connect /ws with a client id, POST /prompt, wait for `executing` with node
null, next prompt. Directly, client k talks to worker k mod N (the best a person can split by
hand); through the gateway, every client talks to the one URL. Rounds alternate direct and
gateway on the same warm workers; the ratio is taken per round (target: gateway >= 0.95x direct).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
FAKE = HERE.parent / "tests" / "fake_comfyui"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_answer(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def prompt(color: int) -> dict[str, object]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}}}


async def client(session: aiohttp.ClientSession, url: str, jobs: list[int]) -> None:
    cid = uuid.uuid4().hex
    async with session.ws_connect(url.replace("http", "ws") + f"/ws?clientId={cid}") as ws:
        while jobs:
            color = jobs.pop()
            async with session.post(url + "/prompt", json={"prompt": prompt(color), "client_id": cid}) as response:
                pid = (await response.json())["prompt_id"]
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                data = event.get("data") or {}
                if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == pid:
                    break


async def run(urls: list[str], clients: int, jobs: int, seed: int) -> float:
    queue = list(range(seed, seed + jobs))
    async with aiohttp.ClientSession(trust_env=False) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session, urls[k % len(urls)], queue) for k in range(clients)))
        return jobs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--job-seconds", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gateway-fleet.txt")
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    try:
        workers = []
        for n in range(args.workers):
            port = free_port()
            env = {**os.environ, "FAKE_COMFYUI_JOB_SECONDS": str(args.job_seconds)}
            procs.append(subprocess.Popen([sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                                           "--output-directory", str(tmp / f"out{n}"), "--temp-directory", str(tmp / f"t{n}")],
                                          cwd=FAKE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            workers.append(f"http://127.0.0.1:{port}")
        for url in workers:
            wait_answer(url + "/prompt")
        gport = free_port()
        exe = shutil.which("comfyrig", path=str(Path(sys.executable).parent)) or "comfyrig"
        procs.append(subprocess.Popen([exe, "gateway", "--port", str(gport), *[a for u in workers for a in ("--url", u)]],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        gateway = f"http://127.0.0.1:{gport}"
        wait_answer(gateway + "/prompt")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with urllib.request.urlopen(gateway + "/comfyrig/fleet", timeout=2) as response:
                if all(b["live"] for b in json.loads(response.read())["backends"]):
                    break
            time.sleep(0.1)
        asyncio.run(run(workers, args.clients, 8, 1))  # warm the workers' node cache paths
        direct, through, ratios = [], [], []
        seed = 10_000
        for _ in range(args.rounds):
            d = asyncio.run(run(workers, args.clients, args.jobs, seed))
            g = asyncio.run(run([gateway], args.clients, args.jobs, seed + args.jobs))
            seed += 2 * args.jobs
            direct.append(d)
            through.append(g)
            ratios.append(g / d)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    ideal = args.workers / args.job_seconds
    lines = [
        f"bench_gateway_fleet.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        (f"{args.workers} fake ComfyUI workers ({args.job_seconds:g} s per job, at most {ideal:.1f} jobs/s together), "
        f"{args.clients} websocket clients (one prompt in flight each), {args.jobs} jobs per run, {args.rounds} interleaved rounds"),
        f"  direct  (client k -> worker k mod {args.workers}): " + ", ".join(f"{v:.2f}" for v in direct) + " jobs/s",
        "  gateway (every client -> one URL):           " + ", ".join(f"{v:.2f}" for v in through) + " jobs/s",
        "  gateway / direct per round: " + ", ".join(f"{r:.3f}" for r in ratios)
        + f"; median {statistics.median(ratios):.3f} (target >= 0.95)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
