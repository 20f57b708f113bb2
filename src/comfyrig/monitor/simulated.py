"""Simulated GPUs for the monitor: COMFYRIG_FAKE_GPUS plus optional live values.

Besides the inventory keys of ``comfyrig.host.gpus.simulated``, each GPU object may
hold (all optional; absent means "N/A", as on a board that cannot tell)::

    utilization_pct, memory_util_pct, temperature_c,   # %, %, °C
    power_w, power_limit_w,                             # W
    sm_clock_mhz, mem_clock_mhz,                        # MHz
    "script": [{...}, {...}],   # per-tick overrides of the keys above and of
                                # memory_used_mib; tick t uses script[t % len]
    "vary": true                # a deterministic wave instead of a script

and each of its ``processes`` may add ``user``, ``command`` and ``port`` (the
ComfyUI port that process listens on, which makes it the GPU's owner).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..host.gpus.inventory import Inventory
from ..host.gpus.simulated import parse_simulated, read_simulated_json
from .snapshot import GpuSample, ProcSample

__all__ = ["LIVE_KEYS", "SimulatedSampler"]

LIVE_KEYS = (
    "utilization_pct",
    "memory_util_pct",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
)
_SCRIPT_KEYS = frozenset((*LIVE_KEYS, "memory_used_mib"))
_FLOATS = frozenset(("power_w", "power_limit_w"))


class SimulatedSampler:
    """Samples a simulated machine; deterministic in the tick number."""

    source = "simulated"
    problem: str | None = None

    def __init__(self, data: Any, origin: str = "COMFYRIG_FAKE_GPUS") -> None:
        self.inventory: Inventory = parse_simulated(data, origin=origin)
        self.driver_version = self.inventory.driver_version
        items: list[Any] = data["gpus"] if isinstance(data, dict) else data  # shape checked by parse_simulated
        self._extra = [_live_spec(i, item, origin) for i, item in enumerate(items)]

    @classmethod
    def from_spec(cls, spec: str) -> SimulatedSampler:
        """From the value of COMFYRIG_FAKE_GPUS; raises ConfigError."""
        data, origin = read_simulated_json(spec)
        return cls(data, origin)

    def sample(self, tick: int) -> tuple[GpuSample, ...]:
        return tuple(self._gpu(i, tick) for i in range(len(self.inventory.gpus)))

    def close(self) -> None:
        pass

    def _gpu(self, i: int, tick: int) -> GpuSample:
        gpu = self.inventory.gpus[i]
        base, script, vary, procs = self._extra[i]
        values: dict[str, Any] = {"memory_used_mib": gpu.memory_used_mib, **base}
        if vary:
            values.update(_wave(i, tick, values))
        if script:
            values.update(script[tick % len(script)])
        used = min(int(values["memory_used_mib"]), gpu.memory_total_mib)
        return GpuSample(
            index=gpu.index,
            name=gpu.name,
            uuid=gpu.uuid,
            memory_used_mib=used,
            memory_total_mib=gpu.memory_total_mib,
            processes=procs,
            **{key: values.get(key) for key in LIVE_KEYS},
        )


def _wave(index: int, tick: int, values: Mapping[str, Any]) -> dict[str, Any]:
    # A slow sine per GPU, phase-shifted by index, so a live view visibly moves.
    util = round(50 + 45 * math.sin(2 * math.pi * (tick / 20 + index / 8)))
    limit = values.get("power_limit_w") or 350.0
    return {
        "utilization_pct": util,
        "memory_util_pct": util // 2,
        "temperature_c": 35 + util * 4 // 10,
        "power_w": round(float(limit) * (0.2 + 0.7 * util / 100), 1),
        "power_limit_w": float(limit),
        "sm_clock_mhz": values.get("sm_clock_mhz") or 1980,
        "mem_clock_mhz": values.get("mem_clock_mhz") or 9501,
    }


def _number(value: Any, key: str, where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, not {value!r}.")
    return float(value) if key in _FLOATS else int(value)


def _live_spec(
    index: int, item: Mapping[str, Any], origin: str
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...], bool, tuple[ProcSample, ...]]:
    where = f"{origin}, GPU {index}"
    base = {key: _number(item.get(key), key, where) for key in LIVE_KEYS if key in item}
    raw_script = item.get("script", [])
    if not isinstance(raw_script, list) or not all(isinstance(step, dict) for step in raw_script):
        raise ConfigError(f"{where}: script must be a list of objects, one per tick.")
    script = []
    for n, step in enumerate(raw_script):
        unknown = sorted(set(step) - _SCRIPT_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: script step {n} has unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_SCRIPT_KEYS))}."
            )
        script.append({key: _number(value, key, f"{where}, script step {n}") for key, value in step.items()})
    try:
        procs = tuple(
            ProcSample(
                pid=int(p["pid"]),
                memory_mib=p.get("used_memory_mib"),
                user=p.get("user"),
                command=p.get("command") or p.get("name"),
                ports=(int(p["port"]),) if p.get("port") is not None else (),
            )
            for p in item.get("processes", [])
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: a process has a malformed port: {exc}.") from exc
    return base, tuple(script), bool(item.get("vary", False)), procs
