"""Benchmark ``comfyrig plan`` on a 40 GB sharded model and 4 simulated GPUs.

The model is written as sparse safetensors shards (valid headers declaring
~40 GB of data; the file system allocates nothing), so the benchmark needs
no disk space. Timed: reading every shard's header, classifying ~2,000
tensors, probing the simulated GPUs and planning the fit; then the whole
``comfyrig plan --json`` command in-process. Target: under 0.2 s.

    .venv/bin/python benchmarks/bench_plan.py   # writes benchmarks/results/plan.txt
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from comfyrig.cli import main
from comfyrig.fit.components import analyze_model
from comfyrig.fit.fit import GIB, default_reserve, plan_fit
from comfyrig.host.gpus.probe import probe_inventory

GPUS = json.dumps([{"name": "RTX 4090", "memory_total_mib": 24564, "memory_used_mib": 400}] * 4)
RUNS = 30


def write_shards(folder: Path, total: int = 40 * 10**9, blocks: int = 48, shards: int = 8) -> int:
    """A DiT of ``blocks`` blocks (8 bf16 linears each) split over ``shards`` files; returns bytes."""
    dim = 5120
    per_block = total // blocks
    ff = (per_block // 2 - 4 * dim * dim) // (2 * dim)
    tensors: list[tuple[str, str, list[int]]] = [("head.modulation", "BF16", [1, 2, dim])]
    for i in range(blocks):
        for m in ("q", "k", "v", "o"):
            tensors += [(f"blocks.{i}.self_attn.{m}.weight", "BF16", [dim, dim]), (f"blocks.{i}.self_attn.{m}.bias", "BF16", [dim])]
        tensors += [(f"blocks.{i}.ffn.0.weight", "BF16", [ff, dim]), (f"blocks.{i}.ffn.0.bias", "BF16", [ff]),
                    (f"blocks.{i}.ffn.2.weight", "BF16", [dim, ff]), (f"blocks.{i}.ffn.2.bias", "BF16", [dim])]
        tensors += [(f"blocks.{i}.norm{n}.weight", "BF16", [dim]) for n in range(1, 4)]
        tensors += [(f"blocks.{i}.modulation", "BF16", [1, 6, dim])]
    written = 0
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dtype, shape in tensors[s::shards]:
            n = 2
            for d in shape:
                n *= d
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path = folder / f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
        with path.open("wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + offset)
        written += 8 + len(raw) + offset
    return written


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def main_bench() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dit-40gb"
        size = write_shards(folder)
        analyze_model(folder)  # warm the page cache: every run then reads the same headers

        def library() -> None:
            info = analyze_model(folder)
            inventory = probe_inventory(GPUS)
            plan_fit([info], inventory.gpus, reserve=default_reserve(info.family, info.memory_usage_factor, None),
                     ram_available=128 * GIB)

        def command() -> None:
            os.environ["COMFYRIG_FAKE_GPUS"] = GPUS
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(["plan", str(folder), "--ram", "128", "--json"])
            assert code == 0

        lib = timed(library, RUNS)
        cli = timed(command, RUNS)
        info = analyze_model(folder)
        plan = plan_fit([info], probe_inventory(GPUS).gpus, reserve=default_reserve(info.family, info.memory_usage_factor, None),
                        ram_available=128 * GIB)
        env = {**os.environ, "COMFYRIG_FAKE_GPUS": GPUS}
        argv = [sys.executable, "-m", "comfyrig", "plan", str(folder), "--ram", "128", "--json"]
        proc = timed(lambda: subprocess.run(argv, env=env, capture_output=True, check=True), 5)
    lines = [
        "comfyrig plan benchmark (benchmarks/bench_plan.py)",
        (f"model: {size / 1e9:.1f} GB in {len(info.files)} sparse safetensors shards, {info.tensor_count} tensors; "
         f"4 simulated GPUs (RTX 4090, 24564 MiB); {RUNS} runs each, warm page cache"),
        f"verdict: {plan.headline}",
        (f"library (headers + classify + probe + plan): median {statistics.median(lib) * 1000:.1f} ms, "
         f"min {min(lib) * 1000:.1f} ms, max {max(lib) * 1000:.1f} ms"),
        (f"command (comfyrig plan --json, in-process): median {statistics.median(cli) * 1000:.1f} ms, "
         f"min {min(cli) * 1000:.1f} ms, max {max(cli) * 1000:.1f} ms"),
        f"whole process (python -m comfyrig plan --json, imports included): median {statistics.median(proc) * 1000:.0f} ms",
        f"target: under 200 ms -> {'met' if statistics.median(cli) < 0.2 else 'NOT met'}",
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    report = main_bench()
    out = Path(__file__).resolve().parent / "results" / "plan.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    sys.stdout.write(report)
