"""Which PyTorch build fits this machine: a pure function of the GPU inventory.

PyTorch publishes one wheel index per CUDA version (``.../whl/cu128``) and
one for the CPU. A CUDA build runs only on a driver that supports at least
its CUDA version, so the rule is: the newest index whose CUDA version is not
newer than the driver's (NVML's ``cuda_driver_version``), among those whose
wheels still carry kernels for every GPU here (newer builds drop old
architectures, and a missing one fails only at run time with "no kernel image
is available for execution on the device").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from ..errors import ConfigError, DriverTooOldError, InstallError
from ..host.gpus.inventory import Inventory

__all__ = [
    "CPU_INDEX",
    "CUDA_INDEXES",
    "PYTORCH_INDEX_BASE",
    "TorchChoice",
    "TorchIndex",
    "choose_torch",
    "cuda_from_driver",
    "index_tag",
    "parse_cuda",
    "tag_of_cuda",
]

PYTORCH_INDEX_BASE = "https://download.pytorch.org/whl"


@dataclass(frozen=True)
class TorchIndex:
    """One PyTorch CUDA wheel index and what it needs from the machine."""

    tag: str  # "cu128": the index's last path segment
    cuda: tuple[int, int]  # the CUDA version its wheels are built with
    min_driver_linux: str  # the driver that first supports that CUDA (NVIDIA's CUDA release notes, Linux x86_64, GA)
    min_compute_capability: tuple[int, int]  # the oldest GPU architecture its current wheels include
    note: str = ""

    @property
    def url(self) -> str:
        return f"{PYTORCH_INDEX_BASE}/{self.tag}"

    @property
    def cuda_text(self) -> str:
        return f"{self.cuda[0]}.{self.cuda[1]}"


# Oldest first. min_compute_capability: PyTorch's wheel build script gives
# the 12.6 builds sm_50 and up (Maxwell, Pascal), the 12.8/12.9 builds sm_70
# and up (from torch 2.8), and CUDA 13 itself has no target below sm_75.
CUDA_INDEXES: tuple[TorchIndex, ...] = (
    TorchIndex("cu118", (11, 8), "520.61.05", (5, 0), "last torch with it: 2.7"),
    TorchIndex("cu121", (12, 1), "530.30.02", (5, 0), "last torch with it: 2.5"),
    TorchIndex("cu124", (12, 4), "550.54.14", (5, 0), "last torch with it: 2.6"),
    TorchIndex("cu126", (12, 6), "560.28.03", (5, 0), "the last index with Maxwell/Pascal kernels"),
    TorchIndex("cu128", (12, 8), "570.26", (7, 0)),
    TorchIndex("cu129", (12, 9), "575.51.03", (7, 0)),
    TorchIndex("cu130", (13, 0), "580.65.06", (7, 5)),
)
CPU_INDEX = f"{PYTORCH_INDEX_BASE}/cpu"

ChoiceKind = Literal["cuda", "cpu", "custom"]


@dataclass(frozen=True)
class TorchChoice:
    """Where torch comes from and why.

    ``tag`` is the build the installed torch should be ("cu128", "cpu"), or
    None when a custom index does not say; ``local`` means ``url`` is a
    folder of wheels (pip's --find-links) rather than an index.
    """

    kind: ChoiceKind
    url: str
    tag: str | None
    reason: str
    local: bool = False
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "index": self.url,
            "tag": self.tag,
            "local": self.local,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }


def parse_cuda(text: str) -> tuple[int, int] | None:
    """'12.8', '12.8.1', 'cu128' or '128' -> (12, 8); None if it is none of those."""
    value = text.strip().lower()
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", value)
    if match:
        return int(match.group(1)), int(match.group(2))
    match = re.fullmatch(r"(?:cu)?(\d{2,3})", value)
    if match:
        digits = match.group(1)
        return int(digits[:-1]), int(digits[-1])
    return None


def tag_of_cuda(cuda: str | None) -> str:
    """torch.version.cuda ('12.8', or None for a CPU build) -> the index tag."""
    parsed = parse_cuda(cuda) if cuda else None
    return f"cu{parsed[0]}{parsed[1]}" if parsed else "cpu"


def index_tag(url: str) -> str | None:
    """The build an index or wheel folder serves, read from its last path segment."""
    last = url.rstrip("/").rsplit("/", 1)[-1].lower()
    return last if re.fullmatch(r"cpu|cu\d{3}", last) else None


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def cuda_from_driver(driver_version: str | None) -> tuple[int, int] | None:
    """The newest CUDA in the table that a Linux driver of this version runs.

    Used only when NVML did not report the CUDA version (the nvidia-smi
    fallback), so table granularity is enough.
    """
    if not driver_version or not re.match(r"\d", driver_version):
        return None
    have = _version_key(driver_version)
    fitting = [i.cuda for i in CUDA_INDEXES if _version_key(i.min_driver_linux) <= have]
    return fitting[-1] if fitting else (0, 0)


def _is_local(url: str) -> bool:
    """A plain path is a folder of wheels; any URL (file:// too) is a package index."""
    return not urlparse(url).scheme


def _cc(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _driver_cuda(inventory: Inventory) -> tuple[tuple[int, int] | None, str]:
    """(CUDA version the driver supports, where that came from)."""
    if inventory.cuda_driver_version:
        return parse_cuda(inventory.cuda_driver_version), f"CUDA {inventory.cuda_driver_version}"
    guessed = cuda_from_driver(inventory.driver_version)
    if guessed and guessed != (0, 0):
        return guessed, f"CUDA {guessed[0]}.{guessed[1]} or newer (from the driver version; NVML did not say)"
    return guessed, "an unknown CUDA version"


def choose_torch(inventory: Inventory, *, cuda: str | None = None, index_url: str | None = None) -> TorchChoice:
    """Pick the PyTorch wheel index for this machine.

    ``cuda`` (``--cuda 12.8``) and ``index_url`` (``--torch-index``) override
    the choice. Raises ConfigError for an unknown ``--cuda``,
    DriverTooOldError when no CUDA build in the table runs on the driver, and
    InstallError when the GPUs are older than every CUDA build.
    """
    driver = inventory.driver_version or "unknown"
    driver_cuda, cuda_desc = _driver_cuda(inventory) if inventory.gpus else (None, "")
    if index_url is not None:
        return _custom(index_url, inventory, driver_cuda)
    if cuda is not None:
        return _forced(cuda, inventory, driver_cuda, cuda_desc)
    if not inventory.gpus:
        why = inventory.problem or "the driver reports no GPU"
        return TorchChoice("cpu", CPU_INDEX, "cpu", f"CPU wheels: no NVIDIA GPU here ({why}).")
    if driver_cuda is None:
        raise ConfigError(
            f"Cannot tell which CUDA version the NVIDIA driver ({driver}) supports, so no PyTorch build can be chosen.",
            hint="Pass --cuda X.Y (e.g. --cuda 12.8) or --torch-index URL.",
        )
    runnable = [i for i in CUDA_INDEXES if i.cuda <= driver_cuda]
    if not runnable:
        oldest = CUDA_INDEXES[0]
        raise DriverTooOldError(
            f"The NVIDIA driver {driver} supports only {cuda_desc}, older than every PyTorch CUDA build comfyrig knows "
            f"(the oldest, {oldest.tag}, needs CUDA {oldest.cuda_text}: driver {oldest.min_driver_linux} or newer on Linux).",
            hint=f"Update the NVIDIA driver to {oldest.min_driver_linux} or newer "
            f"({CUDA_INDEXES[-1].min_driver_linux} or newer for {CUDA_INDEXES[-1].tag}), or install CPU wheels with "
            f"--torch-index {CPU_INDEX}.",
        )
    known = [(g, _cc(g.compute_capability)) for g in inventory.gpus]
    oldest_gpu = min((pair for pair in known if pair[1] is not None), key=lambda p: p[1], default=None)  # type: ignore[arg-type, return-value]
    usable = runnable
    skipped = ""
    if oldest_gpu is not None:
        gpu, cc = oldest_gpu
        assert cc is not None
        usable = [i for i in runnable if i.min_compute_capability <= cc]
        if not usable:
            raise InstallError(
                f"GPU {gpu.index} ({gpu.name}) has compute capability {gpu.compute_capability}, older than any PyTorch "
                f"CUDA build supports (sm_{CUDA_INDEXES[0].min_compute_capability[0]}0 and newer).",
                hint=f"Install CPU wheels with --torch-index {CPU_INDEX}.",
            )
        if usable[-1] is not runnable[-1]:
            newest = runnable[-1]
            skipped = (
                f"; {newest.tag} skipped: its wheels need compute capability "
                f"{newest.min_compute_capability[0]}.{newest.min_compute_capability[1]}+ and GPU {gpu.index} "
                f"({gpu.name}) has {gpu.compute_capability}"
            )
    best = usable[-1]
    reason = (
        f"driver {driver} supports {cuda_desc}: {best.tag} is the newest PyTorch CUDA build "
        f"(CUDA {best.cuda_text}) not newer than that{skipped}."
    )
    return TorchChoice("cuda", best.url, best.tag, reason)


def _find(cuda: str) -> TorchIndex:
    parsed = parse_cuda(cuda)
    for entry in CUDA_INDEXES:
        if entry.cuda == parsed:
            return entry
    choices = ", ".join(i.cuda_text for i in CUDA_INDEXES)
    raise ConfigError(
        f"--cuda {cuda}: PyTorch publishes no wheel index comfyrig knows for that CUDA version; choose one of {choices}.",
        hint="Or give the index itself with --torch-index URL.",
    )


def _forced(cuda: str, inventory: Inventory, driver_cuda: tuple[int, int] | None, cuda_desc: str) -> TorchChoice:
    entry = _find(cuda)
    warnings: list[str] = []
    if not inventory.gpus:
        warnings.append("No NVIDIA GPU was found: a CUDA build of torch will run on the CPU only.")
    elif driver_cuda is not None and entry.cuda > driver_cuda:
        warnings.append(
            f"The driver ({inventory.driver_version}) supports {cuda_desc}, older than {entry.tag}'s CUDA "
            f"{entry.cuda_text}: torch will not see the GPUs until the driver is {entry.min_driver_linux} or newer."
        )
    return TorchChoice("cuda", entry.url, entry.tag, f"--cuda {cuda}: {entry.tag}.", warnings=tuple(warnings))


def _custom(url: str, inventory: Inventory, driver_cuda: tuple[int, int] | None) -> TorchChoice:
    local = _is_local(url)
    tag = index_tag(url)
    warnings: list[str] = []
    if tag and tag != "cpu" and driver_cuda is not None:
        built = parse_cuda(tag)
        if built and built > driver_cuda:
            warnings.append(
                f"{url} serves {tag} builds, newer than the driver's CUDA {driver_cuda[0]}.{driver_cuda[1]}: "
                "torch will not see the GPUs."
            )
    if tag == "cpu" and inventory.gpus:
        warnings.append(f"{url} serves CPU builds, but this machine has {len(inventory.gpus)} NVIDIA GPU(s).")
    what = f"{tag} builds" if tag else "builds of an unknown CUDA version"
    where = "a local wheel folder" if local else "a custom index"
    return TorchChoice("custom", url, tag, f"--torch-index: {what} from {where}.", local=local, warnings=tuple(warnings))
