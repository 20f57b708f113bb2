"""A test-side model of how ComfyUI-MultiGPU reads an allocation string.

Written from the rules of ComfyUI-MultiGPU's distorch_2.py (v2.5.x), not copied:

- ``analyze_safetensor_loading``: the expert string is in byte form when it
  contains any of the letters g, m, k, b (case-insensitive); in ratio form with
  '%'; otherwise fractions of each device's total memory. It then places the
  model's modules from the tail, each on the first device (sorted cuda before
  cpu, by name) whose remaining quota holds it; modules under 0.01 % of the
  model, and ones no quota holds ("orphans"), stay on the compute device.
- ``parse_memory_string``: a number, optional spaces, an optional unit g/m/k/b
  (powers of 1024; "gb" reads as g); the rest of the text is ignored.
- ``calculate_fraction_from_byte_expert_string``: ``device,amount`` items in
  order, each gets min(amount, what is left of the model); a ``*`` item names
  the device for whatever remains (cpu when there is none); each device's
  bytes are then written as a fraction of its total memory with 4 decimals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

UNITS = {"g": 1024**3, "m": 1024**2, "k": 1024, "b": 1, "": 1}


def is_byte_form(expert: str) -> bool:
    return any(letter in expert.lower() for letter in "gmkb")


def parse_memory(text: str) -> float:
    m = re.match(r"(\d+\.?\d*)\s*([gmkb]?)", text.strip().lower())
    if not m:
        raise ValueError(f"not a memory amount: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def byte_allocation(expert: str, model_bytes: int) -> dict[str, float]:
    """Bytes of the model per device, as the byte-form rules assign them."""
    left = float(model_bytes)
    wildcard = "cpu"
    out: dict[str, float] = {}
    ordered: list[tuple[str, float]] = []
    for item in expert.split(";"):
        if "," not in item:
            continue
        device, amount = item.split(",", 1)
        if "*" in amount:
            wildcard = device
        else:
            ordered.append((device, parse_memory(amount)))
    for device, wanted in ordered:
        take = min(wanted, left)
        if take > 0:
            out[device] = take
            left -= take
        if left <= 0:
            break
    if left > 0:
        out[wildcard] = out.get(wildcard, 0.0) + left
    return out


def fractions(allocation: Mapping[str, float], total_memory: Mapping[str, int]) -> dict[str, float]:
    """The fraction string's values, rounded to 4 decimals as written."""
    return {d: round(b / total_memory[d], 4) for d, b in allocation.items() if total_memory[d] > 0}


def place_modules(
    modules: Sequence[tuple[str, int]], quotas: Mapping[str, float], compute_device: str
) -> dict[str, int]:
    """Bytes per device after the tail-first placement of ``modules`` (in model order)."""
    total = sum(size for _, size in modules)
    tiny = total * 0.0001
    order = sorted(quotas, key=lambda d: (d == "cpu", d))
    left = dict(quotas)
    placed: dict[str, int] = {}
    for _name, size in reversed(modules):
        target = compute_device
        if size >= tiny:
            for device in order:
                if left[device] >= size:
                    left[device] -= size
                    target = device
                    break
        placed[target] = placed.get(target, 0) + size
    return placed
