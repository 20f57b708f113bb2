"""CPU placement for ComfyUI workers: which CPUs each may run on, and how many threads.

Pure: (GPU CPU affinities, the CPUs comfyrig may use, overrides) -> one
placement per worker. Measured on a 2 x H200 host (issue #9): two ComfyUIs
with PyTorch's default of one intra-op thread per CPU fought over the CPUs
and scaled 1.12x; pinned to disjoint CPU sets with 4 threads each they scaled
1.87x, so a worker gets its GPU's NUMA-local CPUs, split evenly and never
overlapping, and a thread budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = ["DEFAULT_THREAD_CAP", "THREAD_VARIABLES", "CpuPlacement", "PlacementMode", "format_cpus", "placement_for_gpu", "plan_placement", "thread_env"]

PlacementMode = Literal["auto", "none"]
# Read by PyTorch's OpenMP intra-op pool, MKL and OpenBLAS, the libraries ComfyUI's torch uses on the CPU side.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DEFAULT_THREAD_CAP = 4  # the budget measured in issue #9 (4 threads per worker)


@dataclass(frozen=True)
class CpuPlacement:
    cpus: tuple[int, ...]
    threads: int
    shared: bool = False  # True when CPUs had to be shared with another worker

    def describe(self) -> str:
        return f"CPUs {format_cpus(self.cpus)}, {self.threads} thread{'s' if self.threads != 1 else ''}" + (
            " (shared)" if self.shared else ""
        )


def format_cpus(cpus: Sequence[int]) -> str:
    """(0, 1, 2, 3, 8) -> "0-3,8", the form of /proc/PID/status Cpus_allowed_list."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_VARIABLES}


def plan_placement(
    gpu_affinities: Sequence[tuple[int, ...] | None],
    available: frozenset[int],
    *,
    cpus_per_worker: int | None = None,
    threads_per_worker: int | None = None,
    cpu_quota: float | None = None,
    cores: Sequence[tuple[int, ...]] | None = None,
) -> tuple[list[CpuPlacement], list[str]]:
    """One placement per worker (in order), and notes worth telling the user.

    ``gpu_affinities[i]`` are the CPUs NVML calls local to worker i's GPU
    (None: unknown, any CPU). ``available`` is what comfyrig itself may use
    (``os.sched_getaffinity``), ``cpu_quota`` a cgroup CPU limit in CPUs.
    ``cores`` groups hyperthread siblings (from /sys); when given, a worker
    gets whole physical cores, so two workers never share one core's
    execution units, and its thread budget counts cores, not CPUs.
    """
    if not available:
        raise ValueError("no CPUs available")
    count = len(gpu_affinities)
    notes: list[str] = []
    usable = len(available) if cpu_quota is None else max(1, min(len(available), int(cpu_quota)))
    if cpu_quota is not None and cpu_quota < len(available):
        notes.append(f"a CPU quota of {cpu_quota:g} CPUs applies (container): thread budgets are sized to it")
    if cpus_per_worker is not None and cpus_per_worker > len(available):
        # More than there are would repeat CPUs in one worker's list (0,0,0,...): a typo, not a plan.
        raise ConfigError(
            f"--cpus-per-worker {cpus_per_worker}: comfyrig may use only {len(available)} CPUs here "
            f"({format_cpus(sorted(available))}).",
            hint=f"Give at most {len(available)}, or leave it out to split the CPUs evenly.",
        )
    per_worker = cpus_per_worker or max(1, len(available) // count)
    if count > len(available):
        notes.append(f"{count} workers but only {len(available)} CPUs: workers share CPUs")

    core_of = {cpu: n for n, core in enumerate(cores or ()) for cpu in core}
    per_core = max((len([c for c in core if c in available]) for core in cores or ()), default=1) or 1

    def in_order(cpus: frozenset[int]) -> list[int]:
        # Siblings side by side, so a run of CPUs is a run of whole cores.
        return sorted(cpus, key=lambda c: (core_of.get(c, len(core_of) + c), c))

    def whole_cores(n: int) -> int:
        return n - n % per_core if n >= per_core else n

    taken: set[int] = set()
    placements: list[CpuPlacement] = []
    # Workers whose GPUs share a NUMA node split that node's CPUs evenly.
    groups: dict[frozenset[int], list[int]] = {}
    for i, affinity in enumerate(gpu_affinities):
        node = frozenset(affinity) & available if affinity else frozenset()
        groups.setdefault(node or available, []).append(i)
    quota: dict[int, int] = {}
    for node, members in groups.items():
        share = max(1, len(node) // len(members))
        for i in members:
            quota[i] = whole_cores(min(per_worker, share)) if cpus_per_worker is None else cpus_per_worker

    for i, affinity in enumerate(gpu_affinities):
        near = in_order((frozenset(affinity) & available) if affinity else available)
        want = quota[i]
        chosen = [c for c in near if c not in taken][:want]
        if len(chosen) < want:  # local CPUs exhausted: take other free ones, nearest numbers first
            chosen += [c for c in in_order(available) if c not in taken and c not in chosen][: want - len(chosen)]
        shared = False
        if len(chosen) < want:  # nothing free at all: share, round robin over the allowed CPUs
            pool = sorted(available)
            start = (i * want) % len(pool)
            extra = [pool[(start + k) % len(pool)] for k in range(want)]
            chosen = sorted(set(chosen) | set(extra))[:want] if chosen else extra
            shared = True
        taken.update(chosen)
        physical = len({core_of.get(c, -1 - c) for c in chosen})
        budget = threads_per_worker or min(physical, DEFAULT_THREAD_CAP, max(1, usable // count))
        placements.append(CpuPlacement(cpus=tuple(sorted(chosen)), threads=max(1, budget), shared=shared))
    if any(p.shared for p in placements) and not any("share" in n for n in notes):
        notes.append("some workers share CPUs")
    return placements, notes


def placement_for_gpu(
    gpu: str,
    gpu_affinities: Sequence[tuple[int, ...] | None],
    gpu_names: Sequence[tuple[str, ...]],
    available: frozenset[int],
    *,
    cpu_quota: float | None = None,
    cores: Sequence[tuple[int, ...]] | None = None,
) -> tuple[CpuPlacement | None, list[str]]:
    """The placement of the one worker on ``gpu`` when every GPU of this node runs one.

    For workers started independently on one node (Ray actors): each computes
    the whole node's plan and takes its own share, so they never overlap
    without talking to each other. ``gpu_names[i]`` are the names GPU i goes
    by (index, UUID, MIG ids); None when ``gpu`` is not among them.
    """
    position = next((i for i, names in enumerate(gpu_names) if gpu in names), None)
    if position is None:
        return None, [f"GPU {gpu!r} is not among this node's GPUs: not placed"]
    placements, notes = plan_placement(gpu_affinities, available, cpu_quota=cpu_quota, cores=cores)
    return placements[position], notes
