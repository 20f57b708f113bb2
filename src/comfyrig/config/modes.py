"""GPU modes: what the user asked for, and which physical GPUs that means here.

``select_gpus`` is pure: (request, inventory) -> Selection, validating every
item, because CUDA itself fails silently on bad input: an out-of-range,
empty, lower-case ``gpu-`` or ``cuda:0`` entry gives zero GPUs, and a list is
cut at its first invalid entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import SelectionError
from ..host.gpus.inventory import Gpu, Inventory

__all__ = ["MODE_TITLES", "GpuRequest", "ModeLabel", "RequestKind", "Selection", "select_gpus"]

RequestKind = Literal["auto", "dual", "multi", "single", "gpus", "cpu", "visible"]
ModeLabel = Literal["dual", "multi", "single", "cpu"]

# Titles and one-line descriptions of the panel; the seed's icons, with the
# seed's claim fixed: two visible GPUs are not "distributed processing" by
# themselves. One ComfyUI computes on cuda:0; the others work only where a
# workflow puts work on them, through ComfyUI's own multi-GPU nodes (0.23+) or
# ComfyUI-MultiGPU. Which of those a checkout has, the panel says below this.
MODE_TITLES: dict[ModeLabel, tuple[str, str]] = {
    "dual": ("🎮 Dual GPU Mode", "2 GPUs visible to one ComfyUI: it computes on cuda:0, on cuda:1 only through multi-GPU nodes"),
    "multi": ("🎮 Multi GPU Mode", "{n} GPUs visible to one ComfyUI: it computes on cuda:0, on the others only through multi-GPU nodes"),
    "single": ("🎮 Single GPU Mode", "Using 1 GPU for processing"),
    "cpu": ("🖥️  CPU Mode", "No CUDA devices configured"),
}


@dataclass(frozen=True)
class GpuRequest:
    """What was asked: a mode flag, an explicit list, or CUDA_VISIBLE_DEVICES.

    ``items`` holds the list for "gpus" and "visible", the index for "single".
    """

    kind: RequestKind = "auto"
    items: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "single":
            return f"single {self.items[0]}"
        if self.kind in ("gpus", "visible"):
            return ",".join(self.items) if self.items else "(empty: CPU)"
        return self.kind


@dataclass(frozen=True)
class Selection:
    """The physical GPUs chosen, in CUDA order (the first becomes cuda:0)."""

    mode: ModeLabel
    gpus: tuple[Gpu, ...]
    cuda_visible_devices: str
    request: GpuRequest
    notes: tuple[str, ...] = ()

    @property
    def is_cpu(self) -> bool:
        return self.mode == "cpu"


def select_gpus(request: GpuRequest, inventory: Inventory) -> Selection:
    """Resolve ``request`` against ``inventory``; raises SelectionError."""
    gpus = inventory.gpus
    kind = request.kind
    if kind == "cpu":
        return _cpu(request)
    if kind == "auto":
        if not gpus:
            why = inventory.problem or "no NVIDIA GPU was found"
            return _cpu(request, notes=(f"Auto mode chose the CPU: {why}",))
        return _make(request, gpus, "single" if len(gpus) == 1 else "multi")
    _require_gpus(request, inventory)
    if kind == "multi":
        return _make(request, gpus, "multi")
    if kind == "dual":
        if len(gpus) < 2:
            raise SelectionError(
                f"--dual needs two GPUs, but this machine has one ({_listing(gpus)}).",
                hint="Use --single 0, or --auto to pick the mode from the GPUs present.",
            )
        return _make(request, gpus[:2], "dual")
    if kind == "single":
        (item,) = request.items
        return _make(request, (_by_index(item, gpus, "--single"),), "single")
    # "gpus" (an explicit --gpus list) or "visible" (CUDA_VISIBLE_DEVICES)
    if kind == "visible" and (not request.items or request.items == ("-1",)):
        said = "is empty" if not request.items else "is -1 (no GPU)"
        return _cpu(request, notes=(f"CUDA_VISIBLE_DEVICES {said}: CPU mode, as in the old launcher.",))
    chosen = _resolve_list(request, inventory)
    label: ModeLabel = "single" if len(chosen) == 1 else "dual" if len(chosen) == 2 else "multi"
    return Selection(
        mode=label,
        gpus=tuple(g for g, _ in chosen),
        cuda_visible_devices=",".join(name for _, name in chosen),
        request=request,
    )


def _cpu(request: GpuRequest, notes: tuple[str, ...] = ()) -> Selection:
    # An empty CUDA_VISIBLE_DEVICES hides every GPU; an unset one would expose all.
    return Selection(mode="cpu", gpus=(), cuda_visible_devices="", request=request, notes=notes)


def _make(request: GpuRequest, gpus: tuple[Gpu, ...], mode: ModeLabel) -> Selection:
    # Indices, valid because the child gets CUDA_DEVICE_ORDER=PCI_BUS_ID, which
    # makes CUDA number GPUs as NVML and nvidia-smi do.
    cvd = ",".join(str(g.index) for g in gpus)
    return Selection(mode=mode, gpus=gpus, cuda_visible_devices=cvd, request=request)


def _source_flag(request: GpuRequest) -> str:
    return {"gpus": "--gpus", "visible": "CUDA_VISIBLE_DEVICES"}.get(request.kind, f"--{request.kind}")


def _require_gpus(request: GpuRequest, inventory: Inventory) -> None:
    if inventory.gpus:
        return
    why = inventory.problem or "the driver reports no GPU"
    raise SelectionError(
        f"{_source_flag(request)} asks for GPUs, but none were found: {why}",
        hint="Use --cpu to run on the CPU, or run 'comfyrig doctor' to find out why no GPU is visible.",
    )


def _listing(gpus: tuple[Gpu, ...]) -> str:
    if not gpus:
        return "no GPUs"
    return ", ".join(f"{g.index}: {g.name}" for g in gpus)


def _by_index(item: str, gpus: tuple[Gpu, ...], flag: str) -> Gpu:
    try:
        index = int(item)
    except ValueError:
        raise SelectionError(f"{flag} takes a GPU index, not {item!r}. This machine has: {_listing(gpus)}.") from None
    # By NVML index, not list position: a GPU that fell off the bus is left out of the
    # inventory, and GPU 2 must stay GPU 2.
    found = next((g for g in gpus if g.index == index), None)
    if found is None:
        raise SelectionError(
            f"{flag} {index}: there is no GPU {index}. This machine has {len(gpus)} "
            f"GPU{'s' if len(gpus) != 1 else ''} ({_listing(gpus)})."
        )
    return found


def _resolve_list(request: GpuRequest, inventory: Inventory) -> list[tuple[Gpu, str]]:
    flag = _source_flag(request)
    text = ",".join(request.items)
    chosen: list[tuple[Gpu, str]] = []
    seen: dict[str, str] = {}
    for position, item in enumerate(request.items):
        if not item:
            raise SelectionError(f"{flag}={text!r} has an empty item at position {position + 1}.")
        gpu, name = _resolve_item(item, inventory, flag)
        identity = name if name.startswith("MIG-") else gpu.uuid
        if identity in seen:
            raise SelectionError(
                f"{flag}={text!r} names the same GPU twice ({seen[identity]!r} and {item!r}); "
                "CUDA refuses duplicate devices."
            )
        seen[identity] = item
        chosen.append((gpu, name))
    if sum(1 for _, name in chosen if name.startswith("MIG-")) > 1:
        raise SelectionError(f"{flag}={text!r} names several MIG devices; a CUDA process can use only one.")
    return chosen


def _resolve_item(item: str, inventory: Inventory, flag: str) -> tuple[Gpu, str]:
    """-> (the physical GPU, the name to put in CUDA_VISIBLE_DEVICES)."""
    gpus = inventory.gpus
    if item.lstrip("-").isdigit():
        gpu = _by_index(item, gpus, flag)
        return gpu, str(gpu.index)
    if item.startswith("GPU-"):
        matches = [g for g in gpus if g.uuid.startswith(item)]
        if len(matches) == 1:
            return matches[0], matches[0].uuid
        if len(matches) > 1:
            raise SelectionError(f"{flag}: {item!r} is the start of several GPU UUIDs; give more of it.")
        raise SelectionError(
            f"{flag}: no GPU has the UUID {item!r}. Known: "
            + ", ".join(f"{g.index}: {g.uuid}" for g in gpus)
            + "."
        )
    if item.startswith("MIG-"):
        owner = inventory.owner_of_mig(item)
        if owner is None:
            raise SelectionError(f"{flag}: no MIG device has the id {item!r} (see 'nvidia-smi -L').")
        return owner, item
    raise SelectionError(
        f"{flag}: {item!r} is not a GPU index, a 'GPU-' UUID or a 'MIG-' id.",
        hint="CUDA would silently ignore it (and everything after it). UUIDs are case-sensitive: 'GPU-', not 'gpu-'.",
    )
