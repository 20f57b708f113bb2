"""Finding ComfyUI's interpreter: every layout, and never comfyrig's own without torch."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyrig.config.interpreter import find_python, has_torch, not_found_text


def env_at(prefix: Path, *, torch: bool = False, layout: str = "posix") -> Path:
    """An environment folder with an interpreter (and torch, when asked)."""
    if layout == "posix":
        python = prefix / "bin" / "python"
        site = prefix / "lib" / "python3.12" / "site-packages"
    elif layout == "windows-venv":
        python = prefix / "Scripts" / "python.exe"
        site = prefix / "Lib" / "site-packages"
    else:  # the portable build's python_embeded
        python = prefix / "python.exe"
        site = prefix / "Lib" / "site-packages"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text("")
    python.chmod(0o755)
    if torch:
        (site / "torch").mkdir(parents=True)
        (site / "torch" / "__init__.py").write_text("")
    return python


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(checkout, comfyrig's own environment without torch)."""
    checkout = tmp_path / "comfy" / "ComfyUI"
    checkout.mkdir(parents=True)
    own = tmp_path / "comfyrig-venv"
    env_at(own)
    return checkout, own


@pytest.mark.parametrize("name", [".venv", "venv"])
def test_the_checkouts_own_venv_needs_no_torch_check(layout: tuple[Path, Path], name: str) -> None:
    checkout, own = layout
    python = env_at(checkout / name)
    assert find_python(checkout, {}, own) == python


def test_dot_venv_comes_before_venv(layout: tuple[Path, Path]) -> None:
    checkout, own = layout
    first = env_at(checkout / ".venv")
    env_at(checkout / "venv")
    assert find_python(checkout, {}, own) == first


@pytest.mark.parametrize(("where", "kind"), [("venv", "posix"), (".venv", "windows-venv"), ("python_embeded", "embedded")])
def test_a_sibling_environment_counts_only_with_torch(layout: tuple[Path, Path], where: str, kind: str) -> None:
    checkout, own = layout
    sibling = checkout.parent / where
    python = env_at(sibling, layout=kind)
    assert find_python(checkout, {}, own) is None  # a home folder's unrelated venv is not ComfyUI's
    env_site = sibling / ("Lib" if kind != "posix" else "lib/python3.12") / "site-packages" / "torch"
    env_site.mkdir(parents=True)
    (env_site / "__init__.py").write_text("")
    assert has_torch(sibling)
    assert find_python(checkout, {}, own) == python


@pytest.mark.parametrize("key", ["VIRTUAL_ENV", "CONDA_PREFIX"])
def test_the_active_environment_counts_only_with_torch(layout: tuple[Path, Path], tmp_path: Path, key: str) -> None:
    checkout, own = layout
    bare = tmp_path / "bare"
    env_at(bare)
    assert find_python(checkout, {key: str(bare)}, own) is None
    active = tmp_path / "active"
    python = env_at(active, torch=True)
    assert find_python(checkout, {key: str(active)}, own) == python


def test_comfyrig_installed_into_comfyuis_environment(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    python = env_at(shared, torch=True)
    assert find_python(tmp_path / "ComfyUI", {}, shared) == python
    assert find_python(None, {}, shared) == python


def test_nothing_found_says_where_it_looked(layout: tuple[Path, Path], tmp_path: Path) -> None:
    checkout, own = layout
    bare = tmp_path / "bare"
    env_at(bare)
    environ = {"VIRTUAL_ENV": str(bare)}
    assert find_python(checkout, environ, own) is None
    text = not_found_text(checkout, environ, own)
    assert f"no .venv/ or venv/ in {checkout}" in text
    assert f"VIRTUAL_ENV ({bare}) has no torch" in text and f"comfyrig's own environment ({own}) has no torch" in text


def test_what_is_no_interpreter(layout: tuple[Path, Path]) -> None:
    checkout, own = layout
    bin_dir = checkout / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(checkout / "gone")  # a venv whose base Python was removed
    (checkout / "venv" / "bin" / "python").mkdir(parents=True)  # a folder of that name
    assert find_python(checkout, {"VIRTUAL_ENV": str(checkout / "nowhere")}, own) is None
    other = checkout.parent / "Other"
    env_at(other / ".venv").chmod(0o644)  # not executable
    assert find_python(other, {}, own) is None
