"""Node packs comfyrig can install, and which ref of each fits which ComfyUI.

ComfyUI-MultiGPU patches ComfyUI's model management and imports its
internals, so an update of either side often breaks the other (their issues
#144, #147, #148, #203). comfyrig therefore never installs its newest commit
blindly: ``MULTIGPU_REFS`` maps ComfyUI versions to a commit with a stated
reason. ComfyUI-Manager talks to ComfyUI through stable routes and is cloned
at its default branch.

"Loads" below means: ComfyUI started with the pack in ``custom_nodes/``
imports it without "IMPORT FAILED" and lists its nodes in ``/object_info``
(checked on the CPU with ``--cpu --base-directory`` on a temporary folder; on
the CPU the pack's CUDA paths, DisTorch allocations and dynamic-VRAM hooks are
not exercised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

__all__ = [
    "MULTIGPU_REFS",
    "MULTIGPU_UNDECLARED",
    "NODE_PACKS",
    "NodePack",
    "PackName",
    "PackRef",
    "RefChoice",
    "choose_pack_ref",
    "undeclared_files",
    "version_tuple",
]

PackName = Literal["multigpu", "manager"]


@dataclass(frozen=True)
class NodePack:
    name: PackName
    folder: str  # under custom_nodes/
    url: str
    title: str


NODE_PACKS: dict[PackName, NodePack] = {
    "multigpu": NodePack("multigpu", "ComfyUI-MultiGPU", "https://github.com/pollockjj/ComfyUI-MultiGPU", "ComfyUI-MultiGPU"),
    "manager": NodePack("manager", "ComfyUI-Manager", "https://github.com/ltdrdata/ComfyUI-Manager", "ComfyUI-Manager"),
}


# What ComfyUI-MultiGPU v2.5.x imports at load time without declaring it (see the file).
MULTIGPU_UNDECLARED = Path(__file__).with_name("multigpu-undeclared-requirements.txt")


@dataclass(frozen=True)
class PackRef:
    """A commit of a node pack and the ComfyUI it is known to work with."""

    commit: str  # full SHA, so "already there" is a plain comparison
    label: str
    min_comfyui: tuple[int, ...]  # inclusive
    needs_file: str | None  # a ComfyUI file the pack imports at load time
    reason: str
    # ComfyUI versions where the file is known to be there, so a fresh install of such a tag
    # can choose this commit before the checkout (ComfyUI versions are not ordered by features).
    file_known_from: tuple[int, ...] | None = None
    undeclared: Path | None = None  # requirements the commit imports without declaring them


# Newest first; the first entry whose conditions hold wins.
MULTIGPU_REFS: tuple[PackRef, ...] = (
    PackRef(
        "aacf0f440f9e80d1dd670f779c63e2be4e966415",
        "v2.6.3",
        (0, 3, 64),
        "comfy/memory_management.py",
        # Checked 2026-06 against the newest snapshot (a38cbda, 2026-03-21: v2.6.3 plus a .gitignore change).
        "loads in ComfyUI 0.24.0 and registers its 26 nodes (checked on the CPU); v2.6.x brings dynamic-VRAM "
        "support and imports comfy.memory_management, which ComfyUI 0.3.64 and 0.3.76 lack (there it fails to "
        "import): chosen only when the checkout has that file.",
        file_known_from=(0, 24, 0),
    ),
    PackRef(
        "c5e3e6a215a55421e52a78c8391ac5b0b2e89bfe",
        "v2.5.11",
        (0, 3, 76),
        None,
        # measured on 2 x H200 (shared/COMFYUI-FACTS.md), and on the CPU here
        "known to load in ComfyUI 0.3.76 and register its 25 nodes (measured on 2 x H200, and on the CPU once "
        "accelerate, which it imports without declaring, is installed); the last release before "
        "comfy.memory_management became a requirement.",
        undeclared=MULTIGPU_UNDECLARED,
    ),
    PackRef(
        "6e5225e6c9d313db9bc53ed769d60c8a46a06f97",
        "v2.5.9",
        (0, 3, 64),
        None,
        "released 2025-10-15, the week of ComfyUI 0.3.64; loads in 0.3.64 and registers its 25 nodes (checked on "
        "the CPU, with accelerate, which it imports without declaring); v2.5.11 was reworked for ComfyUI 0.6's "
        "load lists.",
        undeclared=MULTIGPU_UNDECLARED,
    ),
)


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """'0.3.76' or 'v0.3.76' -> (0, 3, 76); None for anything else."""
    if not text:
        return None
    match = re.fullmatch(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


@dataclass(frozen=True)
class RefChoice:
    """The ref to check out, or None for the pack's default branch; ``pending``
    when it can only be chosen once ComfyUI is on disk."""

    ref: str | None
    label: str
    reason: str
    pending: bool = False
    undeclared: Path | None = None  # requirements the ref imports without declaring them


def choose_pack_ref(
    pack: PackName,
    comfyui_version: str | None,
    present_files: frozenset[str] | None,
    *,
    override: str | None = None,
) -> RefChoice:
    """Pick the ref of ``pack`` for a ComfyUI of ``comfyui_version``.

    ``present_files`` are the ``needs_file`` paths found in the checkout, or
    None when there is no checkout yet (a fresh install's plan). Raises
    ConfigError when no known ref fits and none was given.
    """
    if override:
        return RefChoice(override, override, "given on the command line.")
    if pack == "manager":
        return RefChoice(None, "default branch", "ComfyUI-Manager keeps one branch working with current ComfyUI.")
    version = version_tuple(comfyui_version)
    if version is None:
        if present_files is None:
            return RefChoice(None, "?", "chosen from ComfyUI's version once it is checked out.", pending=True)
        raise ConfigError(
            "ComfyUI's version cannot be read (no comfyui_version.py), so comfyrig cannot tell which "
            "ComfyUI-MultiGPU commit works with it.",
            hint="Choose one yourself with --multigpu-ref REF (or 'nodes add multigpu --ref REF').",
        )
    for entry in MULTIGPU_REFS:
        if version < entry.min_comfyui:
            continue
        if entry.needs_file is not None:
            if present_files is None:
                # Before checkout only the tag is known: 0.3.64 and 0.3.76 are known to lack the file,
                # file_known_from and newer to have it; in between, wait for the checkout.
                if version <= (0, 3, 76):
                    continue
                if entry.file_known_from is None or version < entry.file_known_from:
                    return RefChoice(None, "?", "chosen once ComfyUI is checked out (depends on its files).", pending=True)
            elif entry.needs_file not in present_files:
                continue
        return RefChoice(entry.commit, entry.label, entry.reason, undeclared=entry.undeclared)
    oldest = ".".join(str(p) for p in MULTIGPU_REFS[-1].min_comfyui)
    raise ConfigError(
        f"ComfyUI {comfyui_version} is older than any ComfyUI-MultiGPU commit comfyrig knows to work ({oldest} or newer).",
        hint="Install a newer ComfyUI (comfyrig install --ref vX.Y.Z), or choose a ref yourself with --multigpu-ref REF.",
    )


def undeclared_files(pack: PackName) -> tuple[Path, ...]:
    """The requirement files some known ref of ``pack`` needs beyond its own (checked in the venv)."""
    if pack != "multigpu":
        return ()
    return tuple(dict.fromkeys(e.undeclared for e in MULTIGPU_REFS if e.undeclared is not None))


def needed_files() -> frozenset[str]:
    """The ComfyUI files the compatibility table asks about."""
    return frozenset(e.needs_file for e in MULTIGPU_REFS if e.needs_file)
