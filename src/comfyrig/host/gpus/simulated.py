"""Simulated GPUs from ``COMFYRIG_FAKE_GPUS``: a JSON file path or inline JSON.

Accepted shapes (index = position in the list)::

    [{"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576}, ...]
    {"driver_version": "550.54", "cuda_driver_version": "12.4", "gpus": [...]}

Each GPU object takes ``name`` and ``memory_total_mib`` (required), and
``uuid``, ``pci_bus_id``, ``memory_used_mib``, ``compute_capability``,
``processes`` ([{pid, used_memory_mib, name}]), ``mig_uuids``,
``cpu_affinity`` (list of CPU numbers). Missing identities are made up
deterministically so two runs describe the same machine. ``comfyrig
monitor`` reads further, optional keys (utilisation, temperature, power,
clocks, a per-tick "script"): see ``comfyrig.monitor.simulated``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...files import MIB, parse_json, read_text
from .inventory import Gpu, GpuProcess, Inventory

__all__ = ["load_simulated", "parse_simulated", "read_simulated_json"]

_VAR = "COMFYRIG_FAKE_GPUS"


def load_simulated(spec: str) -> Inventory:
    """Read the simulated inventory named by ``spec`` (path or inline JSON).

    Raises ConfigError naming the variable when the text is not usable.
    """
    data, origin = read_simulated_json(spec)
    return parse_simulated(data, origin=origin)


def read_simulated_json(spec: str) -> tuple[Any, str]:
    """The decoded JSON named by ``spec`` and where it came from (for messages).

    Raises ConfigError. The monitor reads its extra keys from the same data.
    """
    text = spec.strip()
    origin = f"{_VAR} (inline JSON)"
    if not text.startswith(("[", "{")):
        path = Path(text).expanduser()
        origin = f"{_VAR} file {path}"
        try:
            text = read_text(path, f"the file {_VAR} names", limit=MIB)
        except ConfigError as exc:
            raise ConfigError(
                exc.message,
                hint="Set it to a JSON file path or to inline JSON such as "
                '\'[{"name": "RTX 3090", "memory_total_mib": 24576}]\'.',
            ) from None
    return parse_json(text, origin), origin


def parse_simulated(data: Any, *, origin: str = _VAR) -> Inventory:
    """Build an Inventory from already-decoded JSON (see module docstring)."""
    driver, cuda = "999.99", "13.0"
    if isinstance(data, dict):
        driver = str(data.get("driver_version", driver))
        cuda = str(data.get("cuda_driver_version", cuda))
        data = data.get("gpus")
    if not isinstance(data, list):
        raise ConfigError(f"{origin} must be a JSON list of GPU objects (or an object with \"gpus\").")
    gpus = tuple(_gpu(i, item, origin) for i, item in enumerate(data))
    return Inventory(gpus=gpus, source="simulated", driver_version=driver, cuda_driver_version=cuda)


def _gpu(index: int, item: Any, origin: str) -> Gpu:
    where = f"{origin}, GPU {index}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be a JSON object, not {type(item).__name__}.")
    try:
        name = str(item["name"])
        total = int(item["memory_total_mib"])
    except KeyError as exc:
        raise ConfigError(f"{where} lacks the required key {exc.args[0]!r}.") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: memory_total_mib must be a whole number of MiB.") from exc
    try:
        used = int(item.get("memory_used_mib", 0))
        processes = tuple(
            GpuProcess(pid=int(p["pid"]), used_memory_mib=_opt_int(p.get("used_memory_mib")), name=p.get("name"))
            for p in item.get("processes", [])
        )
        affinity = item.get("cpu_affinity")
        cpus = tuple(int(c) for c in affinity) if affinity is not None else None
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{where} has a malformed value: {exc}.") from exc
    if total <= 0 or not 0 <= used <= total:
        raise ConfigError(f"{where}: need memory_total_mib > 0 and 0 <= memory_used_mib <= total.")
    return Gpu(
        index=index,
        name=name,
        uuid=str(item.get("uuid", f"GPU-5a5a5a5a-0000-4000-8000-{index:012d}")),
        pci_bus_id=str(item.get("pci_bus_id", f"00000000:{index + 1:02X}:00.0")),
        memory_total_mib=total,
        memory_used_mib=used,
        compute_capability=item.get("compute_capability"),
        processes=processes,
        mig_uuids=tuple(str(m) for m in item.get("mig_uuids", [])),
        cpu_affinity=cpus,
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
