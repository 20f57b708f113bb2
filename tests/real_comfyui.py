"""The real ComfyUI checkouts the contract tests (marker ``comfyui``) run against.

``COMFYUI_DIRS`` names several, separated by ``os.pathsep`` (``:``); ``COMFYUI_DIR`` names
one, as before (used when ``COMFYUI_DIRS`` is unset). Each checkout's interpreter is the
entry at the same place in ``COMFYUI_PYTHONS`` (``COMFYUI_PYTHON`` for ``COMFYUI_DIR``) when
one is given there, else the checkout's own ``.venv`` or ``venv``. Tests take
``real_params()`` as parameters: one per checkout, named by the version in its
comfyui_version.py, and in one xdist group (they share the CPU and, from 0.24 on, a
checkout's database lock); with none configured, one parameter that skips.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from comfyrig.comfy.checkout import comfyui_version

SKIP = "set COMFYUI_DIRS (or COMFYUI_DIR) to real ComfyUI checkouts to run the contract tests (tests/real_comfyui.py)"


@dataclass(frozen=True)
class Checkout:
    dir: str
    python: str
    version: str
    problem: str | None = None  # a misconfiguration: the test fails with it rather than skip


def _entries(value: str | None) -> list[str]:
    return [] if not value else value.split(os.pathsep)


def _checkout(directory: str, python: str | None) -> Checkout:
    root = Path(directory).expanduser()
    version = comfyui_version(root) if root.is_dir() else None
    label = version or root.name or directory
    if not (root / "main.py").is_file():
        return Checkout(directory, python or "", label, f"{directory} is not a ComfyUI checkout (no main.py)")
    if not python:
        python = next((str(p) for v in (".venv", "venv") if (p := root / v / "bin" / "python").is_file()), None)
        if python is None:
            return Checkout(directory, "", label, f"no interpreter for {directory}: it has no .venv/venv; "
                            "give one at its place in COMFYUI_PYTHONS (or in COMFYUI_PYTHON)")
    if not Path(python).is_file():
        return Checkout(directory, python, label, f"the interpreter {python} for {directory} does not exist")
    return Checkout(str(root), python, label)


def checkouts(environ: Mapping[str, str] = os.environ) -> list[Checkout]:
    dirs = [d for d in _entries(environ.get("COMFYUI_DIRS")) if d]
    if dirs:
        pythons = _entries(environ.get("COMFYUI_PYTHONS"))
        return [_checkout(d, pythons[i] if i < len(pythons) else None) for i, d in enumerate(dirs)]
    if environ.get("COMFYUI_DIR"):
        return [_checkout(environ["COMFYUI_DIR"], environ.get("COMFYUI_PYTHON"))]
    return []


REAL = checkouts()


def real_params(prefix: str = "") -> list[Any]:
    """Parameters for ``@pytest.mark.parametrize`` / ``fixture(params=...)``: a Checkout each."""
    marks = [pytest.mark.comfyui, pytest.mark.xdist_group("comfyui-real")]
    if not REAL:
        return [pytest.param(None, id=prefix.rstrip("-") or "real", marks=[pytest.mark.comfyui, pytest.mark.skip(reason=SKIP)])]
    return [pytest.param(c, id=f"{prefix}{c.version}", marks=marks) for c in REAL]


def usable(checkout: Checkout | None) -> Checkout:
    """The checkout, or the test fails with what is wrong in the configuration."""
    if checkout is None:
        pytest.skip(SKIP)
    if checkout.problem:
        pytest.fail(checkout.problem)
    return checkout
