"""Finding ComfyUI's Python when nobody named it (``--python`` / ``COMFYUI_PYTHON``).

ComfyUI needs the interpreter of *its* environment (torch, its requirements). comfyrig's own
interpreter usually has neither, and a ComfyUI started with it dies with "No module named
torch" far from the cause, so it is used only when it has torch (comfyrig installed into
ComfyUI's environment); otherwise nothing is found and launching refuses, naming the flag.

Where environments are, in the layouts people use:
- the checkout's own ``.venv`` or ``venv`` (ComfyUI's README, ``comfyrig install``, uv);
- a venv beside the checkout (``~/comfy/venv`` next to ``~/comfy/ComfyUI``, as many guides
  and comfy-cli workspaces have it), and the Windows portable build's ``python_embeded``
  next to ``ComfyUI/`` (its spelling); a sibling folder is only believed when it has torch,
  since a home folder's unrelated ``venv`` would otherwise be taken;
- the active environment: ``VIRTUAL_ENV``, or ``CONDA_PREFIX`` for a conda env, when it has torch.
ComfyUI Desktop keeps its ``.venv`` in the user's base folder, not beside the code it runs
from, so it is not found: name it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Candidate", "candidates", "find_python", "has_torch", "interpreter_of", "not_found_text"]

# (relative to the checkout, must have torch)
_BESIDE_CHECKOUT: tuple[tuple[str, bool], ...] = (
    (".venv", False),
    ("venv", False),
    ("../venv", True),
    ("../.venv", True),
    ("../python_embeded", True),
)


@dataclass(frozen=True)
class Candidate:
    prefix: Path  # the environment's folder
    why: str  # how it was found, for messages
    needs_torch: bool


def interpreter_of(prefix: Path) -> Path | None:
    """The Python of an environment folder (POSIX venv or conda, Windows venv, embedded)."""
    for name in ("bin/python", "bin/python3", "Scripts/python.exe", "python.exe"):
        path = prefix / name
        if path.is_file() and os.access(path, os.X_OK):  # a dangling link or a non-executable is no interpreter
            return path
    return None


def has_torch(prefix: Path) -> bool:
    """True when torch is installed in that environment (looked up on disk, never imported)."""
    if (prefix / "Lib" / "site-packages" / "torch" / "__init__.py").is_file():
        return True
    return any(prefix.glob("lib/python3*/site-packages/torch/__init__.py"))


def candidates(comfyui_dir: Path | None, environ: Mapping[str, str], own_prefix: Path) -> list[Candidate]:
    """Where ComfyUI's environment may be, in the order they are tried."""
    found: list[Candidate] = []
    if comfyui_dir is not None:
        for rel, needs_torch in _BESIDE_CHECKOUT:
            found.append(Candidate(Path(os.path.normpath(comfyui_dir / rel)), f"{rel} of the checkout", needs_torch))
    for key in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if environ.get(key):
            found.append(Candidate(Path(environ[key]), f"the active environment {key}", True))
    found.append(Candidate(own_prefix, "comfyrig's own environment", True))
    return found


def find_python(comfyui_dir: Path | None, environ: Mapping[str, str], own_prefix: Path | None = None) -> Path | None:
    """ComfyUI's interpreter, or None when no environment fits (see the module's docstring)."""
    for candidate in candidates(comfyui_dir, environ, own_prefix or Path(sys.prefix)):
        python = interpreter_of(candidate.prefix)
        if python is not None and (not candidate.needs_torch or has_torch(candidate.prefix)):
            return python.absolute()
    return None


def not_found_text(comfyui_dir: Path | None, environ: Mapping[str, str], own_prefix: Path | None = None) -> str:
    """Why nothing was found: where it looked, and what each environment there lacked."""
    looked = []
    if comfyui_dir is not None:
        looked.append(f"no .venv/ or venv/ in {comfyui_dir}, no venv/, .venv/ or python_embeded/ with torch beside it")
    for candidate in candidates(None, environ, own_prefix or Path(sys.prefix)):
        if interpreter_of(candidate.prefix) is not None:
            looked.append(f"{candidate.why} ({candidate.prefix}) has no torch")
    return (
        f"No Python environment for ComfyUI was found ({'; '.join(looked)}), and comfyrig does not start "
        "ComfyUI with an interpreter that has no torch."
    )
