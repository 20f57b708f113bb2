"""Ask ComfyUI's own interpreter what PyTorch sees, in a child process.

The launcher never imports torch (3-4 s, and it would initialise CUDA here);
the child runs a short script under the same CUDA_VISIBLE_DEVICES and
CUDA_DEVICE_ORDER that ComfyUI will get, and answers as one JSON line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TorchReport", "judge_torch", "run_torch_check"]

_SCRIPT = r"""
import json, sys
out = {"python": sys.version.split()[0]}
try:
    import torch
except Exception as exc:
    out["error"] = "torch is not importable: %s: %s" % (type(exc).__name__, exc)
else:
    out["torch_version"] = torch.__version__
    out["cuda_version"] = torch.version.cuda
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
        count = torch.cuda.device_count() if out["cuda_available"] else 0
        out["device_count"] = count
        out["devices"] = [
            {"name": torch.cuda.get_device_name(i),
             "memory_total_mib": torch.cuda.get_device_properties(i).total_memory // 2**20,
             "uuid": str(getattr(torch.cuda.get_device_properties(i), "uuid", "") or "")}
            for i in range(count)]
    except Exception as exc:
        out["error"] = "CUDA query failed: %s: %s" % (type(exc).__name__, exc)
print("COMFYRIG_TORCH " + json.dumps(out))
"""


@dataclass(frozen=True)
class TorchReport:
    """What torch reported in the child; ``problems`` are the classic failures found."""

    python: str
    ok: bool
    error: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    cuda_available: bool | None = None
    device_count: int | None = None
    devices: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "ok": self.ok,
            "error": self.error,
            "torch_version": self.torch_version,
            "cuda_version": self.cuda_version,
            "cuda_available": self.cuda_available,
            "device_count": self.device_count,
            "devices": list(self.devices),
            "problems": list(self.problems),
        }


def run_torch_check(
    python: str, env_overrides: Mapping[str, str], environ: Mapping[str, str], timeout_s: float = 120.0
) -> dict[str, Any]:
    """Run the probe script; returns its JSON, or {"error": ...} on any failure."""
    try:
        result = subprocess.run(
            [python, "-c", _SCRIPT],
            env={**environ, **env_overrides},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        return {"error": f"the interpreter {python} does not exist"}
    except subprocess.TimeoutExpired:
        return {"error": f"the torch check did not answer within {timeout_s:.0f} s"}
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("COMFYRIG_TORCH "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("COMFYRIG_TORCH "))
            return parsed
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"the torch check exited with {result.returncode}: {tail[0]}"}


def judge_torch(python: str, raw: Mapping[str, Any], expected_devices: int, machine_gpus: int) -> TorchReport:
    """Turn the child's answer into a report, naming the classic failures."""
    problems: list[str] = []
    error = raw.get("error")
    if error:
        problems.append(str(error))
    elif machine_gpus and raw.get("cuda_version") is None:
        problems.append(
            f"torch {raw.get('torch_version')} is a CPU-only build, but this machine has {machine_gpus} NVIDIA "
            "GPU(s): install a CUDA build of torch in ComfyUI's environment."
        )
    elif expected_devices and not raw.get("cuda_available"):
        problems.append("torch has CUDA support but torch.cuda.is_available() is False (driver too old for this torch?).")
    elif raw.get("device_count") != expected_devices:
        problems.append(
            f"torch sees {raw.get('device_count')} device(s) under the chosen CUDA_VISIBLE_DEVICES, "
            f"but {expected_devices} were selected."
        )
    return TorchReport(
        python=python,
        ok=not problems,
        error=str(error) if error else None,
        torch_version=raw.get("torch_version"),
        cuda_version=raw.get("cuda_version"),
        cuda_available=raw.get("cuda_available"),
        device_count=raw.get("device_count"),
        devices=tuple(raw.get("devices") or ()),
        problems=tuple(problems),
    )
