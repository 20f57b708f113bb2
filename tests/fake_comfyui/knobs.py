"""Fault and environment knobs of the fake, read once from FAKE_COMFYUI_* variables (see README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional


class KnobError(ValueError):
    """A FAKE_COMFYUI_* variable holds a value the fake cannot use."""


@dataclass(frozen=True)
class Knobs:
    start_delay_s: float = 0.0             # seconds slept before binding (while "importing" nodes)
    crash_at_start: bool = False           # raise during device init, exit 1, never bind
    crash_on_job: Optional[int] = None     # os._exit(1) during the N-th job (1-based)
    hang_on_job: Optional[int] = None      # the N-th job blocks until /interrupt
    job_seconds: float = 0.0               # extra seconds spent in every job that executes a node
    node_packs: frozenset = frozenset()    # {"multigpu"}
    spawn_child: bool = False              # start a sleeping grandchild in our process group
    child_pidfile: Optional[str] = None    # where the grandchild's pid goes
    ignore_sigint: bool = False
    ignore_sigterm: bool = False
    device_name: str = "NVIDIA H100 80GB HBM3"
    vram_mb: int = 81559                   # MiB, as torch reports an H100 80GB
    gpu_count: int = 8                     # physical GPUs the fake pretends the host has
    torch_version: str = "2.11.0+cu130"
    jobs_api: bool = False                 # serve ComfyUI 0.24's /api/jobs and /api/jobs/{id}
    native_multigpu: bool = False          # ComfyUI 0.23+'s own multi-GPU nodes and its every-device /system_stats
    previews: bool = False                 # FakeSleep sends a binary preview frame per step


KNOWN_NODE_PACKS = frozenset({"multigpu"})


def _number(env: Mapping[str, str], name: str, kind, default):
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise KnobError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise KnobError(f"{name}={raw!r} must not be negative")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def from_env(env: Mapping[str, str] = os.environ) -> Knobs:
    """Raises KnobError for a malformed value, so a typo in a test is loud, not ignored."""
    packs = frozenset(p.strip().lower() for p in env.get("FAKE_COMFYUI_NODE_PACKS", "").split(",") if p.strip())
    unknown = packs - KNOWN_NODE_PACKS
    if unknown:
        raise KnobError(f"FAKE_COMFYUI_NODE_PACKS: unknown pack(s) {sorted(unknown)}; known: {sorted(KNOWN_NODE_PACKS)}")
    return Knobs(
        start_delay_s=_number(env, "FAKE_COMFYUI_START_DELAY", float, 0.0),
        crash_at_start=_flag(env, "FAKE_COMFYUI_CRASH_AT_START"),
        crash_on_job=_number(env, "FAKE_COMFYUI_CRASH_ON_JOB", int, None),
        hang_on_job=_number(env, "FAKE_COMFYUI_HANG_ON_JOB", int, None),
        job_seconds=_number(env, "FAKE_COMFYUI_JOB_SECONDS", float, 0.0),
        node_packs=packs,
        spawn_child=_flag(env, "FAKE_COMFYUI_SPAWN_CHILD"),
        child_pidfile=env.get("FAKE_COMFYUI_CHILD_PIDFILE") or None,
        ignore_sigint=_flag(env, "FAKE_COMFYUI_IGNORE_SIGINT"),
        ignore_sigterm=_flag(env, "FAKE_COMFYUI_IGNORE_SIGTERM"),
        device_name=env.get("FAKE_COMFYUI_DEVICE_NAME") or Knobs.device_name,
        vram_mb=_number(env, "FAKE_COMFYUI_VRAM_MB", int, Knobs.vram_mb),
        gpu_count=_number(env, "FAKE_COMFYUI_GPU_COUNT", int, Knobs.gpu_count),
        torch_version=env.get("FAKE_COMFYUI_TORCH_VERSION") or Knobs.torch_version,
        jobs_api=_flag(env, "FAKE_COMFYUI_JOBS_API"),
        native_multigpu=_flag(env, "FAKE_COMFYUI_NATIVE_MULTIGPU"),
        previews=_flag(env, "FAKE_COMFYUI_PREVIEWS"),
    )
