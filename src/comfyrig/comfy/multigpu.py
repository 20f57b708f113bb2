"""What can use a ComfyUI's other GPUs: the node catalogue, what a running ComfyUI shows, a verdict.

One ComfyUI that sees several GPUs computes on ``cuda:0``; the others do work only where a
workflow puts it there, through one of two kinds of nodes:

- **ComfyUI's own** (``comfy_extras/nodes_multigpu.py``, PR #7063, first released in 0.23.0):
  ``MultiGPU_WorkUnits`` ("MultiGPU CFG Split") puts a copy of the model on up to ``max_gpus``
  GPUs and splits the conditionings of each sampling step between them, so it speeds up only
  workflows with CFG > 1 (a positive and a negative prompt); the work is split evenly
  (``MultiGPU_Options``, which would weigh GPU speeds, is not registered), so it is meant for
  identical GPUs, Ampere or newer in the PR's measurements (up to 1.95x). ``SelectModelDevice``,
  ``SelectCLIPDevice`` and ``SelectVAEDevice`` put a diffusion model, text encoder or VAE on
  ``gpu:N``; an unknown ``gpu:N`` passes through with a log line. The same release made
  ``/system_stats`` list every torch device, the default one first.
- **ComfyUI-MultiGPU** (a custom node pack): ``<Loader>MultiGPU`` loaders with a ``device``
  input and ``<Loader>DisTorch2MultiGPU`` loaders that spread one model's layers over GPUs and
  RAM (memory, not speed).

``MultiGpuFinding`` is what a running ComfyUI says (``/object_info``, ``/system_stats``);
``CheckoutMultiGpu`` what a checkout on disk says before it starts; ``judge`` turns a finding
and the selected GPUs into a ``Verdict`` of sentences, a pure function (the launch dashboard,
the plain view and doctor render the same one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "AMPERE",
    "NATIVE_NODES",
    "NATIVE_NODE_FILE",
    "NATIVE_SINCE",
    "PACK_LOADERS",
    "CheckoutMultiGpu",
    "MultiGpuFinding",
    "NativeNodes",
    "NodeEntry",
    "TorchDevice",
    "Verdict",
    "VerdictLine",
    "cfg_split_lines",
    "device_lines",
    "find_multigpu_packs",
    "finding_from",
    "gpu_map",
    "judge",
    "native_in_checkout",
    "native_nodes",
    "pack_nodes",
    "read_checkout",
]

NATIVE_SINCE = "0.23.0"  # the first release with comfy_extras/nodes_multigpu.py (PR #7063, merged 2026-05-25)
AMPERE = (8, 0)  # compute capability of the oldest architecture CFG split was measured on
PACK_URL = "https://github.com/pollockjj/ComfyUI-MultiGPU"


@dataclass(frozen=True)
class NodeEntry:
    """One native multi-GPU node: its class (``/object_info`` key), title in the UI, what it does."""

    name: str
    title: str
    purpose: str


# In the order the extension registers them (nodes_multigpu.py::MultiGPUExtension).
NATIVE_NODES: tuple[NodeEntry, ...] = (
    NodeEntry("MultiGPU_WorkUnits", "MultiGPU CFG Split",
              "a copy of the model on each GPU (up to max_gpus), the conditionings of every sampling step split between them"),
    NodeEntry("SelectModelDevice", "Select Model Device", "puts the diffusion model on gpu:N"),
    NodeEntry("SelectCLIPDevice", "Select CLIP Device", "puts the text encoder on gpu:N"),
    NodeEntry("SelectVAEDevice", "Select VAE Device", "puts the VAE on gpu:N"),
)
_NATIVE_NAMES = frozenset(n.name for n in NATIVE_NODES)
_NATIVE_MODULE = "comfy_extras.nodes_multigpu"

# ComfyUI-MultiGPU's loaders that most workflows use (pollockjj/ComfyUI-MultiGPU __init__.py);
# ``pack_nodes`` recognises all of them by their "MultiGPU" suffix.
PACK_LOADERS = (
    "CheckpointLoaderSimpleMultiGPU",
    "UNETLoaderMultiGPU",
    "CLIPLoaderMultiGPU",
    "CheckpointLoaderSimpleDisTorch2MultiGPU",
    "UNETLoaderDisTorch2MultiGPU",
)


def pack_nodes(object_info: Mapping[str, Any]) -> tuple[str, ...]:
    """ComfyUI-MultiGPU's node classes in an ``/object_info`` answer, well-known loaders first.

    Its classes end in "MultiGPU" (``UNETLoaderMultiGPU``, ``...DisTorch2MultiGPU``); ComfyUI's own
    ``MultiGPU_WorkUnits`` does not, and is told apart by its module too.
    """
    def native(name: str) -> bool:
        entry = object_info.get(name)
        module = entry.get("python_module") if isinstance(entry, Mapping) else None
        return name in _NATIVE_NAMES or module == _NATIVE_MODULE

    found = [n for n in object_info if n.endswith("MultiGPU") and not native(n)]
    known = [n for n in PACK_LOADERS if n in found]
    return (*known, *sorted(n for n in found if n not in known))


@dataclass(frozen=True)
class TorchDevice:
    """One entry of ``/system_stats``' ``devices``."""

    name: str  # as ComfyUI names it: "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", "cpu"
    type: str  # "cuda", "cpu", "xpu", ...
    index: int | None
    vram_total: int | None = None  # bytes

    @property
    def label(self) -> str:
        """"cuda:1" for a GPU, the name otherwise."""
        return f"{self.type}:{self.index}" if self.index is not None else self.name

    @property
    def model(self) -> str:
        """The GPU's own name, without ComfyUI's "cuda:0 " prefix and " : allocator" suffix."""
        text = re.sub(r"^(?:CUDA )?\w+:\d+:? ", "", self.name)
        return text.rsplit(" : ", 1)[0].strip()


@dataclass(frozen=True)
class MultiGpuFinding:
    """What a running ComfyUI shows about multi-GPU.

    ``native``: ComfyUI's own multi-GPU node classes it registered; ``pack``: ComfyUI-MultiGPU's;
    ``devices``: ``/system_stats``' list (None when it did not answer); ``device_options``: the
    ``device`` choices of Select Model Device ("default", "cpu", "gpu:0", ...), which name a
    ``gpu:N`` only when torch sees two GPUs or more.
    """

    native: tuple[str, ...] = ()
    pack: tuple[str, ...] = ()
    devices: tuple[TorchDevice, ...] | None = None
    version: str | None = None
    device_options: tuple[str, ...] | None = None

    @property
    def lists_every_device(self) -> bool:
        """Whether ``devices`` is every torch device (0.23+) rather than only the default one."""
        return bool(self.native) or (self.devices is not None and len(self.devices) > 1)

    @property
    def gpus(self) -> tuple[TorchDevice, ...]:
        return tuple(d for d in self.devices or () if d.type != "cpu")


def finding_from(object_info: Mapping[str, Any] | None, system_stats: Mapping[str, Any] | None) -> MultiGpuFinding:
    """Read the two answers (either may be None: not asked, or no answer) into a finding."""
    info = object_info or {}
    native = tuple(n.name for n in NATIVE_NODES if n.name in info)
    options: tuple[str, ...] | None = None
    select = info.get("SelectModelDevice")
    if isinstance(select, Mapping):
        spec = select.get("input", {}).get("required", {}).get("device")
        # ["COMBO", {"options": [...]}] (V3 nodes) or [[...], {...}] (V1)
        if isinstance(spec, (list, tuple)) and spec:
            raw = spec[1].get("options") if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping) else spec[0]
            if isinstance(raw, (list, tuple)):
                options = tuple(str(o) for o in raw)
    devices: tuple[TorchDevice, ...] | None = None
    version = None
    if system_stats is not None:
        system = system_stats.get("system")
        if isinstance(system, Mapping) and system.get("comfyui_version") is not None:
            version = str(system["comfyui_version"])
        raw_devices = system_stats.get("devices")
        if isinstance(raw_devices, list):
            devices = tuple(_device(d) for d in raw_devices if isinstance(d, Mapping))
    return MultiGpuFinding(native=native, pack=pack_nodes(info), devices=devices, version=version, device_options=options)


def _device(entry: Mapping[str, Any]) -> TorchDevice:
    index = entry.get("index")
    total = entry.get("vram_total")
    return TorchDevice(
        name=str(entry.get("name", "?")),
        type=str(entry.get("type", "?")),
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
        vram_total=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


# -- the checkout, before it starts ---------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutMultiGpu:
    """What a ComfyUI checkout on disk says about multi-GPU, read without starting it.

    ``native``: it has ComfyUI's own multi-GPU nodes (``comfy_extras/nodes_multigpu.py``, loaded
    by ``nodes.py``); ``packs``: ComfyUI-MultiGPU folders in ``custom_nodes`` with whether each
    is enabled.
    """

    version: str | None
    native: bool
    packs: tuple[tuple[Path, bool], ...] = field(default=())

    @property
    def pack_enabled(self) -> bool:
        return any(on for _, on in self.packs)

    @property
    def who(self) -> str:
        return f"ComfyUI {self.version}" if self.version else "This ComfyUI"


NATIVE_NODE_FILE = "comfy_extras/nodes_multigpu.py"


@dataclass(frozen=True)
class NativeNodes:
    """The native multi-GPU nodes a ComfyUI checkout registers (empty: none)."""

    source: str  # what was read, for messages
    names: frozenset[str]

    @property
    def can_place(self) -> bool:
        return {"SelectCLIPDevice", "SelectVAEDevice"} <= self.names

    @property
    def can_split_cfg(self) -> bool:
        return "MultiGPU_WorkUnits" in self.names


def native_nodes(comfyui_dir: Path) -> NativeNodes:
    """Which native multi-GPU nodes the checkout at ``comfyui_dir`` has, read from its files
    without running it: ``comfy_extras/nodes_multigpu.py`` exists, ``nodes.py`` loads it among
    its built-in extras, and it defines the node ids. A file that cannot be read counts as absent."""
    module = comfyui_dir / NATIVE_NODE_FILE
    try:
        text = module.read_text(encoding="utf-8", errors="replace")
        loader = (comfyui_dir / "nodes.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return NativeNodes(f"{comfyui_dir} (no {NATIVE_NODE_FILE})", frozenset())
    if "nodes_multigpu.py" not in loader:
        return NativeNodes(f"{module} (not loaded by nodes.py)", frozenset())
    names = frozenset(n for n in _NATIVE_NAMES if re.search(rf"""node_id\s*=\s*["']{n}["']""", text))
    return NativeNodes(str(module), names)


def native_in_checkout(comfyui_dir: Path) -> bool:
    """Whether the checkout has any of ComfyUI's own multi-GPU nodes."""
    return bool(native_nodes(comfyui_dir).names)


def find_multigpu_packs(comfyui_dir: Path) -> list[tuple[Path, bool]]:
    """ComfyUI-MultiGPU folders in custom_nodes, with whether each is enabled."""
    nodes = comfyui_dir / "custom_nodes"
    found: list[tuple[Path, bool]] = []
    for folder, enabled in ((nodes, True), (nodes / ".disabled", False)):
        try:
            entries = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            continue
        for path in entries:
            name = path.name.lower().replace("_", "-")
            if name.startswith("comfyui-multigpu") or _pyproject_name(path) == "comfyui-multigpu":
                found.append((path, enabled and not name.endswith(".disabled")))
    return found


def _pyproject_name(path: Path) -> str | None:
    try:
        text = (path / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r'^name\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else None


def read_checkout(comfyui_dir: Path, version: str | None) -> CheckoutMultiGpu | None:
    """``CheckoutMultiGpu`` of the checkout at ``comfyui_dir`` (``version`` from comfyui_version.py);
    None when the folder has no ``nodes.py`` (not a ComfyUI checkout, so nothing can be said)."""
    if not (comfyui_dir / "nodes.py").is_file():
        return None
    return CheckoutMultiGpu(version=version, native=native_in_checkout(comfyui_dir), packs=tuple(find_multigpu_packs(comfyui_dir)))


# -- the verdict ---------------------------------------------------------------------------------


class GpuLike(Protocol):
    """A selected GPU as the verdict needs it (``host.gpus.inventory.Gpu`` is one)."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def memory_total_mib(self) -> int: ...
    @property
    def compute_capability(self) -> str | None: ...


Level = Literal["ok", "warn", "info"]


@dataclass(frozen=True)
class VerdictLine:
    level: Level
    text: str


@dataclass(frozen=True)
class Verdict:
    """Sentences about what will use the GPUs after the first; ``level`` is the worst line's."""

    lines: tuple[VerdictLine, ...]

    @property
    def level(self) -> Level:
        levels = {line.level for line in self.lines}
        return "warn" if "warn" in levels else "ok" if "ok" in levels else "info"

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def gpu_map(gpus: Sequence[GpuLike]) -> str:
    """"gpu:0 = GPU 2, gpu:1 = GPU 0": ComfyUI's device names for the selected physical GPUs.

    gpu:N and cuda:N follow CUDA_VISIBLE_DEVICES order (comfyrig's children run with
    CUDA_DEVICE_ORDER=PCI_BUS_ID, so the physical numbers are nvidia-smi's).
    """
    return ", ".join(f"gpu:{n} = GPU {g.index}" for n, g in enumerate(gpus))


def _others(gpus: Sequence[GpuLike]) -> str:
    rest = [f"GPU {g.index}" for g in gpus[1:]]
    return rest[0] if len(rest) == 1 else f"{', '.join(rest[:-1])} and {rest[-1]}"


def _cc(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.match(r"^\s*(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def cfg_split_lines(gpus: Sequence[GpuLike]) -> tuple[VerdictLine, ...]:
    """MultiGPU CFG Split's conditions against the selected GPUs: identical, Ampere or newer."""
    if len(gpus) < 2:
        return ()
    lines: list[VerdictLine] = []
    kinds = {(g.name, g.memory_total_mib) for g in gpus}
    if len(kinds) > 1:
        listed = ", ".join(f"GPU {g.index} {g.name} ({g.memory_total_mib // 1024} GiB)" for g in gpus)
        lines.append(VerdictLine(
            "warn",
            f"CFG split: the GPUs differ ({listed}); it gives each GPU an equal share of every step (GPU speeds "
            "are not weighed yet), so the slowest sets the pace. Select ... Device is not affected.",
        ))
    old = [(g, cc) for g in gpus if (cc := _cc(g.compute_capability)) is not None and cc < AMPERE]
    unknown = [g for g in gpus if _cc(g.compute_capability) is None]
    if old:
        listed = ", ".join(f"GPU {g.index} {g.name} ({cc[0]}.{cc[1]})" for g, cc in old)
        lines.append(VerdictLine(
            "warn",
            f"CFG split: {listed} {'is' if len(old) == 1 else 'are'} older than Ampere (compute capability 8.0); "
            "it was measured on Ampere or newer, and may gain little or nothing here.",
        ))
    if unknown:
        listed = ", ".join(f"GPU {g.index}" for g in unknown)
        lines.append(VerdictLine("info", f"CFG split: the compute capability of {listed} is unknown (N/A), so Ampere or newer "
                                         "cannot be checked."))
    if not lines:
        g = gpus[0]
        lines.append(VerdictLine(
            "ok",
            f"CFG split's conditions hold: the GPUs are identical ({g.name}, compute capability {g.compute_capability}, "
            "Ampere or newer).",
        ))
    return tuple(lines)


def _same_model(torch_name: str, nvml_name: str) -> bool:
    """torch's and NVML's names of one GPU agree (both come from the driver); torch names a MIG
    instance by its parent's name plus " MIG 1g.10gb", so a longer torch name still matches."""
    def norm(text: str) -> str:
        return re.sub(r"^nvidia ", "", " ".join(text.lower().split()))

    seen, chosen = norm(torch_name), norm(nvml_name)
    return seen == chosen or seen.startswith(chosen + " mig ")


def device_lines(finding: MultiGpuFinding, gpus: Sequence[GpuLike]) -> tuple[VerdictLine, ...]:
    """``/system_stats``' devices against the selection: torch must see the GPUs comfyrig chose."""
    if finding.devices is None or not gpus:
        return ()
    chosen = ", ".join(f"GPU {g.index} {g.name}" for g in gpus)
    if not finding.gpus:
        where = ", ".join(d.name for d in finding.devices) or "no device"
        return (VerdictLine("warn", f"/system_stats lists {where}: ComfyUI runs on the CPU although comfyrig selected "
                                    f"{chosen} (is --cpu among ComfyUI's flags?)."),)
    seen = finding.gpus
    if not finding.lists_every_device:
        # Before 0.23 /system_stats shows only the default device: only cuda:0 can be compared.
        first, want = seen[0], gpus[0]
        if not _same_model(first.model, want.name):
            return (VerdictLine("warn", f"ComfyUI's cuda:0 is {first.model}, but comfyrig selected GPU {want.index} "
                                        f"({want.name}) as cuda:0: torch sees other GPUs than comfyrig chose "
                                        "(--cuda-device or --default-device among ComfyUI's flags?)."),)
        who = f"ComfyUI {finding.version}" if finding.version else "this ComfyUI"
        return (VerdictLine("info", f"cuda:0 is {first.model} as selected; {who}'s "
                                    "/system_stats lists only its default device, so whether torch sees "
                                    f"{_others(gpus)} is not visible from outside."),)
    listed = ", ".join(f"{d.label} {d.model}" for d in seen)
    if len(seen) != len(gpus):
        return (VerdictLine("warn", f"torch sees {len(seen)} GPU{'s' if len(seen) != 1 else ''} ({listed}), but comfyrig "
                                    f"selected {len(gpus)} ({chosen}): torch sees other GPUs than comfyrig chose "
                                    "(--cuda-device or --default-device among ComfyUI's flags?)."),)
    wrong = [(d, g) for d, g in zip(seen, gpus, strict=True) if not _same_model(d.model, g.name)]
    if wrong:
        detail = "; ".join(f"{d.label} is {d.model}, not GPU {g.index} {g.name}" for d, g in wrong)
        return (VerdictLine("warn", f"torch sees other GPUs than comfyrig chose: {detail}."),)
    return (VerdictLine("ok", f"/system_stats lists the selected GPUs: {listed}."),)


def _names(entries: Sequence[str]) -> str:
    titles = {n.name: n.title for n in NATIVE_NODES}
    return ", ".join(titles.get(e, e) for e in entries)


def _version_key(version: str | None) -> tuple[int, ...] | None:
    if version is None:
        return None
    parts = re.findall(r"\d+", version.split("+")[0])[:3]
    return tuple(int(p) for p in parts) if parts else None


def judge(finding: MultiGpuFinding, gpus: Sequence[GpuLike]) -> Verdict:
    """What will use the GPUs after the first, for one ComfyUI that sees all of ``gpus`` (2 or more).

    Pure: the finding (what the running ComfyUI registered and lists) and the selected GPUs
    (names, memory and compute capability from NVML) in CUDA order.
    """
    who = f"ComfyUI {finding.version}" if finding.version else "This ComfyUI"
    others = _others(gpus)
    lines: list[VerdictLine] = []
    native, pack = finding.native, finding.pack
    if native:
        lines.append(VerdictLine(
            "ok",
            f"{who} has native multi-GPU nodes ({_names(native)}); {others} "
            f"{'does' if len(gpus) == 2 else 'do'} work only where a workflow uses them ({gpu_map(gpus)}):",
        ))
        entries = {n.name: n for n in NATIVE_NODES}
        if "MultiGPU_WorkUnits" in native:
            lines.append(VerdictLine("info", f"• MultiGPU CFG Split: {entries['MultiGPU_WorkUnits'].purpose}; faster only "
                                             "with CFG > 1 (at CFG 1 there is no negative conditioning to hand over; "
                                             "up to 1.95x reported)."))
        selects = [n for n in native if n != "MultiGPU_WorkUnits"]
        if selects:
            lines.append(VerdictLine("info", f"• {_names(selects)}: put a diffusion model, text encoder or VAE on gpu:N "
                                             "(an unknown gpu:N passes through unchanged)."))
        if "MultiGPU_WorkUnits" in native:
            lines.extend(cfg_split_lines(gpus))
        if pack:
            lines.append(VerdictLine("info", f"ComfyUI-MultiGPU is loaded too ({len(pack)} nodes: {', '.join(pack[:2])}{', ...' if len(pack) > 2 else ''}): "
                                             "its loaders place models (device) or spread one model's layers (DisTorch2)."))
    elif pack:
        known = _version_key(finding.version)
        native_note = (f"; {who} has no native multi-GPU nodes (they came with {NATIVE_SINCE})"
                       if known is not None and known < (0, 23) else "")
        lines.append(VerdictLine(
            "ok",
            f"ComfyUI-MultiGPU is loaded ({', '.join(pack[:3])}{', ...' if len(pack) > 3 else ''}): its loader nodes put models on "
            f"{others} (device input) or spread one model's layers over the GPUs (DisTorch2: memory, not speed)"
            f"{native_note}.",
        ))
    else:
        known = _version_key(finding.version)
        if known is not None and known >= (0, 23):
            why = (f"{who} registered no native multi-GPU nodes although it should have them (look for "
                   "'nodes_multigpu' or IMPORT FAILED in its log), and ComfyUI-MultiGPU is not loaded")
            fix = "Fix the import, install ComfyUI-MultiGPU into custom_nodes/"
        else:
            why = (f"{who} has no native multi-GPU nodes (they came with ComfyUI {NATIVE_SINCE}) and "
                   "ComfyUI-MultiGPU is not loaded")
            fix = f"Update ComfyUI to {NATIVE_SINCE} or newer, install ComfyUI-MultiGPU into custom_nodes/"
        lines.append(VerdictLine(
            "warn",
            f"No multi-GPU nodes: {why}, so ComfyUI computes only on cuda:0 (GPU {gpus[0].index}); {others} "
            f"{'stays' if len(gpus) == 2 else 'stay'} idle. {fix}, or run 'comfyrig launch --workers' for one "
            "ComfyUI per GPU (throughput).",
        ))
    lines.extend(device_lines(finding, gpus))
    return Verdict(tuple(lines))
