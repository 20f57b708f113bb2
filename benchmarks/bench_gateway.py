"""What the gateway costs: the same requests and events, direct to a ComfyUI and through the gateway.

    .venv/bin/python benchmarks/bench_gateway.py [--rounds 5] [--out benchmarks/results/gateway.txt]

Backends are stand-ins that answer at once (benchmarks/stub_gateway_backend.py, their own
process), so what is measured is the gateway alone; it runs as `comfyrig gateway` in its own
process too. Side by side, in interleaved rounds (this machine drifts):

- POST /prompt latency, one request at a time: direct vs through the gateway (p50, p95); the
  added p50 (target < 2 ms).
- Events: a websocket client times each event from the moment the backend sent it
  (``bench_sent_ns``, same machine clock): direct vs relayed (target: < 2 ms added at p50).
- Throughput: 32 concurrent clients posting prompts through the gateway (target >= 500 prompts/s).
- Memory: the gateway's resident memory after 10,000 prompts with history (target: bounded,
  < 150 MB), and one merged GET /history of 2 x 10,000 entries (its time).
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
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def post_latencies(session: aiohttp.ClientSession, url: str, n: int, client: str | None = None) -> list[float]:
    out = []
    for _ in range(n):
        body: dict[str, Any] = {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}}
        if client:
            body["client_id"] = client
        start = time.perf_counter()
        async with session.post(url + "/prompt", json=body) as response:
            await response.read()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def event_latencies(session: aiohttp.ClientSession, url: str, prompts: int) -> list[float]:
    client = uuid.uuid4().hex
    out: list[float] = []
    async with session.ws_connect(url.replace("http", "ws") + f"/ws?clientId={client}") as ws:
        await ws.receive()  # status
        for _ in range(prompts):
            async with session.post(url + "/prompt", json={"prompt": {}, "client_id": client}) as response:
                pid = (await response.json())["prompt_id"]
            while True:
                message = await ws.receive()
                now = time.time_ns()
                data = json.loads(message.data)
                sent = (data.get("data") or {}).get("bench_sent_ns")
                if sent:
                    out.append((now - sent) / 1e6)
                if data["type"] == "executing" and data["data"].get("node") is None and data["data"].get("prompt_id") == pid:
                    break
    return out


async def throughput(session: aiohttp.ClientSession, url: str, total: int, concurrency: int) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(url + "/prompt", json={"prompt": {}}) as response:
                await response.read()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def measure(direct: str, gateway: str, gateway_pid: int, rounds: int) -> list[str]:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        # warm both paths (connections, the gateway's upstream sockets)
        await post_latencies(session, direct, 20)
        await post_latencies(session, gateway, 20)
        lat = {"direct": [], "gateway": []}  # type: dict[str, list[float]]
        ev = {"direct": [], "gateway": []}  # type: dict[str, list[float]]
        for _ in range(rounds):
            for name, url in (("direct", direct), ("gateway", gateway)):
                lat[name] += await post_latencies(session, url, 100)
                ev[name] += await event_latencies(session, url, 10)
        rates = {"direct": [], "gateway": []}  # type: dict[str, list[float]]
        for _ in range(rounds):
            for name, url in (("direct", direct), ("gateway", gateway)):
                rates[name].append(await throughput(session, url, 1000, 32))
        before = rss_mib(gateway_pid)
        for _ in range(10):
            await throughput(session, gateway, 1000, 32)
        after = rss_mib(gateway_pid)
        start = time.perf_counter()
        async with session.get(gateway + "/history") as response:
            merged = len(await response.json())
        history_s = time.perf_counter() - start
    lines = [
        f"POST /prompt latency, one at a time ({rounds} x 100 each, interleaved):",
        f"  direct   p50 {statistics.median(lat['direct']):.2f} ms  p95 {pct(lat['direct'], .95):.2f} ms",
        f"  gateway  p50 {statistics.median(lat['gateway']):.2f} ms  p95 {pct(lat['gateway'], .95):.2f} ms",
        f"  added    p50 {statistics.median(lat['gateway']) - statistics.median(lat['direct']):.2f} ms  (target < 2 ms)",
        f"Event latency from the backend's send ({len(ev['gateway'])} events each):",
        f"  direct   p50 {statistics.median(ev['direct']):.2f} ms  p95 {pct(ev['direct'], .95):.2f} ms",
        f"  gateway  p50 {statistics.median(ev['gateway']):.2f} ms  p95 {pct(ev['gateway'], .95):.2f} ms",
        f"  added    p50 {statistics.median(ev['gateway']) - statistics.median(ev['direct']):.2f} ms  (target < 2 ms)",
        "Throughput, 32 concurrent clients, 1000 prompts per round:",
        f"  direct (one backend)   median {statistics.median(rates['direct']):.0f} prompts/s",
        f"  gateway (two backends) median {statistics.median(rates['gateway']):.0f} prompts/s  (target >= 500)",
        "Memory of the gateway process:",
        f"  after the rounds above {before:.1f} MiB; after 10,000 more prompts {after:.1f} MiB (target < 150 MB, bounded)",
        f"  one merged GET /history of {merged} entries: {history_s * 1000:.0f} ms",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gateway.txt")
    args = parser.parse_args()
    stub = subprocess.Popen([sys.executable, str(HERE / "stub_gateway_backend.py"), "--count", "2"],
                            stdout=subprocess.PIPE, text=True)
    gateway_proc = None
    try:
        line = stub.stdout.readline() if stub.stdout else ""
        ports = line.split()[1].split(",")
        port = free_port()
        exe = shutil.which("comfyrig", path=str(Path(sys.executable).parent)) or "comfyrig"
        gateway_proc = subprocess.Popen([exe, "gateway", "--port", str(port), *[arg for p in ports for arg in ("--url", f"http://127.0.0.1:{p}")]],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        gateway = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                import urllib.request

                with urllib.request.urlopen(gateway + "/comfyrig/fleet", timeout=2) as response:
                    if all(b["live"] for b in json.loads(response.read())["backends"]):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the gateway did not come up")
            time.sleep(0.1)
        lines = asyncio.run(measure(f"http://127.0.0.1:{ports[0]}", gateway, gateway_proc.pid, args.rounds))
    finally:
        for proc in (gateway_proc, stub):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    header = [(f"bench_gateway.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
               f"Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}")]
    text = "\n".join(header + lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
