"""Which real checkouts the contract tests run against, and with which interpreter."""

from __future__ import annotations

import os
from pathlib import Path

from .real_comfyui import checkouts


def checkout(root: Path, version: str, venv: str | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    if venv:
        (root / venv / "bin").mkdir(parents=True)
        (root / venv / "bin" / "python").write_text("")
    return root


def test_several_checkouts_each_with_its_interpreter(tmp_path: Path) -> None:
    own = checkout(tmp_path / "a", "0.3.64", venv=".venv")
    other = checkout(tmp_path / "b", "0.24.0")
    python = tmp_path / "python"
    python.write_text("")
    found = checkouts({"COMFYUI_DIRS": os.pathsep.join([str(own), str(other)]), "COMFYUI_PYTHONS": os.pathsep + str(python),
                       "COMFYUI_DIR": "/ignored"})
    assert [(c.version, c.python, c.problem) for c in found] == [
        ("0.3.64", str(own / ".venv" / "bin" / "python"), None),
        ("0.24.0", str(python), None),
    ]


def test_a_misconfigured_checkout_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    bare = checkout(tmp_path / "bare", "0.3.76")
    (missing,) = checkouts({"COMFYUI_DIRS": str(bare)})
    assert missing.version == "0.3.76" and "no interpreter" in (missing.problem or "")
    (nowhere,) = checkouts({"COMFYUI_DIRS": str(tmp_path / "nowhere")})
    assert "not a ComfyUI checkout" in (nowhere.problem or "")


def test_one_checkout_as_before(tmp_path: Path) -> None:
    one = checkout(tmp_path / "c", "0.3.76", venv="venv")
    (found,) = checkouts({"COMFYUI_DIR": str(one)})
    assert found.python == str(one / "venv" / "bin" / "python") and found.problem is None
    assert checkouts({}) == []
