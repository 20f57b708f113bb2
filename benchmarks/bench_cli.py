"""Start-up time of the command line: `comfyrig --help` vs comfy-cli's `comfy --help`, and `comfyrig gpus --json`.

    python benchmarks/bench_cli.py --comfy-cli-venv DIR [--rounds 30] [--out benchmarks/results/cli-dev.txt]

Run it with the Python of the venv comfyrig is installed in (the `comfyrig`
script beside `sys.executable` is measured). comfy-cli lives in a venv of its
own, outside the repository, given by --comfy-cli-venv or COMFY_CLI_VENV:

    python3 -m venv ~/comfycli-venv && ~/comfycli-venv/bin/pip install comfy-cli

Bytecode is cached for both before timing: `python -m compileall` over each
venv's site-packages (and comfyrig's source folder for an editable install),
and the children run without PYTHONDONTWRITEBYTECODE, after one round that is
not counted. The commands then run interleaved, N rounds, the order rotating
each round, from an empty temporary folder (no .env), with 2 simulated GPUs
(COMFYRIG_FAKE_GPUS). Medians are compared; the script prints the result,
writes it to --out, and exits 1 when a target is missed:

- `comfyrig --help` under 0.15 s and at least 5x faster than `comfy --help`;
- `comfyrig gpus --json` under 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # the sibling module (scripts run from this folder)

HERE = Path(__file__).resolve().parent
HELP_TARGET_S = 0.15
RATIO_TARGET = 5.0
GPUS_TARGET_S = 0.2
TWO_GPUS = {
    "driver_version": "580.00",
    "cuda_driver_version": "13.0",
    "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "memory_used_mib": 300} for _ in range(2)],
}


def site_packages(python: Path) -> list[str]:
    code = "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps(sorted({p['purelib'], p['platlib']})))"
    return list(json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout))


def compile_bytecode(python: Path, folders: list[str], env: dict[str, str]) -> None:
    """Write the .pyc files that a normal install (without PYTHONDONTWRITEBYTECODE) would have."""
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0", *folders], env=env,
                   stdout=subprocess.DEVNULL, check=False)


def version_of(python: Path, dist: str) -> str:
    code = f"from importlib.metadata import version; print(version({dist!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfy-cli-venv", type=Path, default=os.environ.get("COMFY_CLI_VENV"),
                        help="a venv with comfy-cli installed (default: $COMFY_CLI_VENV)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cli-dev.txt")
    args = parser.parse_args()

    if args.comfy_cli_venv is None:
        parser.error("give --comfy-cli-venv DIR (or COMFY_CLI_VENV); make one outside the repository with:\n"
                     "  python3 -m venv DIR && DIR/bin/pip install comfy-cli")
    comfy = args.comfy_cli_venv / "bin" / "comfy"
    comfy_python = args.comfy_cli_venv / "bin" / "python"
    comfyrig = Path(sys.executable).parent / "comfyrig"
    for exe, how in ((comfy, "DIR/bin/pip install comfy-cli"), (comfyrig, "pip install -e . in this venv")):
        if not exe.exists():
            print(f"bench_cli: {exe} does not exist ({how})", file=sys.stderr)
            return 2

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMFYUI_", "COMFYRIG_", "CUDA_", "PYTORCH_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env["COMFYRIG_FAKE_GPUS"] = json.dumps(TWO_GPUS)
    import comfyrig as package

    comfyrig_src = str(Path(package.__file__).resolve().parent)
    compile_bytecode(Path(sys.executable), [*site_packages(Path(sys.executable)), comfyrig_src], env)
    compile_bytecode(comfy_python, site_packages(comfy_python), env)

    commands = {
        "comfyrig --help": [str(comfyrig), "--help"],
        "comfy --help": [str(comfy), "--help"],
        "comfyrig gpus --json": [str(comfyrig), "gpus", "--json"],
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as cwd:
        for n in range(args.rounds + 1):
            names = list(commands)
            names = names[n % len(names):] + names[: n % len(names)]  # no command always runs first
            for name in names:
                start = time.perf_counter()
                result = subprocess.run(commands[name], cwd=cwd, env=env, capture_output=True, check=False)
                elapsed = time.perf_counter() - start
                if result.returncode != 0 or (name != "python -c pass (floor)" and not result.stdout):
                    print(f"bench_cli: {name} failed ({result.returncode}): {result.stderr.decode()[-500:]}", file=sys.stderr)
                    return 2
                if n:  # round 0 warms the page cache
                    times[name].append(elapsed)
    load_after = os.getloadavg()

    median = {name: statistics.median(ts) for name, ts in times.items()}
    ratio = median["comfy --help"] / median["comfyrig --help"]
    checks = [
        (f"comfyrig --help median < {HELP_TARGET_S} s", median["comfyrig --help"] < HELP_TARGET_S),
        (f"comfy --help / comfyrig --help >= {RATIO_TARGET:g}x", ratio >= RATIO_TARGET),
        (f"comfyrig gpus --json median < {GPUS_TARGET_S} s", median["comfyrig gpus --json"] < GPUS_TARGET_S),
    ]
    ok = all(met for _, met in checks)
    lines = [
        f"# bench_cli {time.strftime('%Y-%m-%d %H:%M')}  {'PASS' if ok else 'FAIL'}",
        (f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
         f"Python {platform.python_version()}"),
        f"load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (the machine is shared)",
        (f"versions: comfyrig {version_of(Path(sys.executable), 'comfyrig')}, "
         f"typer {version_of(Path(sys.executable), 'typer')}, comfy-cli {version_of(comfy_python, 'comfy-cli')}"),
        ("bytecode cached: python -m compileall over both venvs' site-packages and comfyrig's source, "
         "children without PYTHONDONTWRITEBYTECODE, 1 warm-up round not counted"),
        f"{args.rounds} rounds, interleaved, order rotating; cwd an empty folder; 2 simulated GPUs (COMFYRIG_FAKE_GPUS)",
        "",
        f"{'command':<26} {'median s':>9} {'min s':>7} {'max s':>7}",
    ]
    for name, ts in times.items():
        lines.append(f"{name:<26} {median[name]:>9.3f} {min(ts):>7.3f} {max(ts):>7.3f}")
    lines += ["", f"ratio comfy --help / comfyrig --help: {ratio:.1f}x", ""]
    lines += [f"{'met   ' if met else 'MISSED'} {what}" for what, met in checks]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
