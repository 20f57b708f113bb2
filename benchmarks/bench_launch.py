"""Time from command to ready: `comfyrig launch --plain` vs `python main.py` directly.

Ready means ComfyUI's HTTP API answers GET /prompt, for both. Runs
alternate, N rounds, in one run on one machine; the table gives medians and
the difference. Usage (COMFYUI_DIR, COMFYUI_PYTHON name a real ComfyUI):

    python benchmarks/bench_launch.py --rounds 3 [--mode cpu|single] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/prompt", timeout=1) as r:
            return "exec_info" in json.loads(r.read())
    except OSError:
        return False


def time_to_ready(argv: list[str], env: dict[str, str], cwd: str, port: int, timeout: float = 300) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not ready(port):
            if proc.poll() is not None:
                raise SystemExit(f"{argv[:3]} exited with {proc.returncode} before ready")
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"{argv[:3]} not ready after {timeout} s")
            time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["cpu", "single"], default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    comfy_dir, python = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PYTHON")
    if not comfy_dir or not python:
        raise SystemExit("set COMFYUI_DIR and COMFYUI_PYTHON to a real ComfyUI")
    exe = shutil.which("comfyrig") or shutil.which("comfyrig", path=str(Path(sys.executable).parent))
    comfyrig = [exe] if exe else [sys.executable, "-m", "comfyrig"]
    env = {k: v for k, v in os.environ.items() if k != "COMFYRIG_FAKE_GPUS"}
    env.setdefault("COMFYRIG_STATE_DIR", "/tmp/comfyrig-bench-state")
    direct_env = dict(env)
    mode_flags = ["--cpu"] if args.mode == "cpu" else ["--single", "0"]
    if args.mode == "cpu":
        direct_env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        direct_env.update(CUDA_VISIBLE_DEVICES="0", CUDA_DEVICE_ORDER="PCI_BUS_ID")
    ours, direct = [], []
    for _ in range(args.rounds):
        port = free_port()
        ours.append(time_to_ready([*comfyrig, "launch", "--plain", *mode_flags, "--port", str(port),
                                   "--comfyui-dir", comfy_dir, "--python", python], env, comfy_dir, port))
        port = free_port()
        argv = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port)] + (["--cpu"] if args.mode == "cpu" else [])
        direct.append(time_to_ready(argv, direct_env, comfy_dir, port))
    a, b = statistics.median(ours), statistics.median(direct)
    text = "\n".join([
        f"# Time to ready, {args.mode} mode ({platform.node()}, ComfyUI at {comfy_dir})",
        "",
        "| command | median s | runs |",
        "| --- | --- | --- |",
        f"| comfyrig launch --plain | {a:.2f} | {', '.join(f'{x:.2f}' for x in ours)} |",
        f"| python main.py | {b:.2f} | {', '.join(f'{x:.2f}' for x in direct)} |",
        "",
        f"comfyrig adds {a - b:+.2f} s (target: at most 0.5 s), {args.rounds} alternating rounds.",
    ]) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
