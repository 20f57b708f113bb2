"""Fallback inventory from ``nvidia-smi --query-gpu`` when NVML cannot be loaded.

Same PCI-bus numbering as NVML. Fields an older driver does not know
(``compute_cap`` before R510) are retried without.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

from ...errors import GpuProbeError
from .inventory import Gpu, GpuProcess, Inventory

__all__ = ["SmiUnavailable", "parse_apps_csv", "parse_gpu_csv", "probe_smi"]

_GPU_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "memory.used", "driver_version", "compute_cap")
_APP_FIELDS = ("gpu_uuid", "pid", "used_memory", "process_name")
_TIMEOUT_S = 10.0


class SmiUnavailable(Exception):
    """nvidia-smi is not on PATH."""


def _run(exe: str, query: str, fields: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, f"--{query}={','.join(fields)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )


def probe_smi(exe: str | None = None) -> Inventory:
    """Ask nvidia-smi; raises SmiUnavailable if it is missing, GpuProbeError if it fails."""
    exe = exe or shutil.which("nvidia-smi")
    if exe is None:
        raise SmiUnavailable("nvidia-smi is not on PATH")
    fields: tuple[str, ...] = _GPU_FIELDS
    try:
        result = _run(exe, "query-gpu", fields)
        if result.returncode != 0 and "compute_cap" in result.stdout + result.stderr:
            fields = fields[:-1]
            result = _run(exe, "query-gpu", fields)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpuProbeError(f"nvidia-smi could not be run: {exc}.") from exc
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise GpuProbeError(
            f"nvidia-smi failed (exit {result.returncode}): {detail[-1] if detail else 'no output'}.",
            hint="Check that the NVIDIA driver is loaded (nvidia-smi on its own should list the GPUs).",
        )
    rows = parse_gpu_csv(result.stdout, fields)
    try:
        apps = parse_apps_csv(_run(exe, "query-compute-apps", _APP_FIELDS).stdout)
    except (OSError, subprocess.TimeoutExpired):
        apps = {}
    gpus = tuple(
        Gpu(
            index=int(row["index"]),
            name=row["name"],
            uuid=row["uuid"],
            pci_bus_id=row["pci.bus_id"],
            memory_total_mib=_int(row["memory.total"]) or 0,
            memory_used_mib=_int(row["memory.used"]) or 0,
            compute_capability=_na(row.get("compute_cap")),
            processes=apps.get(row["uuid"], ()),
        )
        for row in rows
    )
    driver = _na(rows[0].get("driver_version")) if rows else None
    return Inventory(gpus=gpus, source="nvidia-smi", driver_version=driver)


def parse_gpu_csv(text: str, fields: tuple[str, ...] = _GPU_FIELDS) -> list[dict[str, str]]:
    """Parse ``--format=csv,noheader,nounits`` output into one dict per GPU."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    # strict=False: a short row keeps the fields it has
    return [dict(zip(fields, (c.strip() for c in row), strict=False)) for row in reader if row]


def parse_apps_csv(text: str) -> dict[str, tuple[GpuProcess, ...]]:
    """``--query-compute-apps`` output -> processes per GPU UUID."""
    by_gpu: dict[str, list[GpuProcess]] = {}
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) < 4 or not row[1].strip().isdigit():
            continue
        by_gpu.setdefault(row[0].strip(), []).append(
            GpuProcess(pid=int(row[1]), used_memory_mib=_int(row[2]), name=_na(row[3]))
        )
    return {uuid: tuple(procs) for uuid, procs in by_gpu.items()}


def _na(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if not value or value.startswith("[N/A") or value == "N/A" else value


def _int(value: str | None) -> int | None:
    value = _na(value)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
