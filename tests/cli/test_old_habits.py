"""What a user of the old launcher scripts types first (issue 16, items 9 and 10)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ..conftest import InProcessCli


def _plan(result_stdout: str) -> dict[str, object]:
    data = json.loads(result_stdout)
    assert isinstance(data, dict)
    return data


def test_python_by_bare_name_is_found_on_path(run: InProcessCli, comfy_tree: Path) -> None:
    run.gpus(2)
    bin_dir = run.cwd / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3.99"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "COMFYUI_DIR": str(comfy_tree)}
    result = run("--dry-run", "--json", "--python", "python3.99", env=env)
    assert result.returncode == 0, result.stderr
    assert _plan(result.stdout)["python"] == str(fake)
    missing = run("--dry-run", "--python", "no-such-python", env=env)
    assert missing.returncode == 2 and "'no-such-python', which is not a command on PATH" in missing.stderr


@pytest.mark.parametrize(
    ("flags", "where"),
    [(["--user-directory", "/srv/comfy-user"], "/srv/comfy-user"), (["--base-directory", "/srv/base"], "/srv/base/user"),
     (["--user-directory", "rel"], "{checkout}/rel")],
)
def test_the_log_goes_to_comfyuis_user_directory(run: InProcessCli, comfy_tree: Path, flags: list[str], where: str) -> None:
    run.gpus(2)
    result = run("--dry-run", "--json", "--single", "0", "--", *flags, env={"COMFYUI_DIR": str(comfy_tree), "COMFYUI_PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    [instance] = _plan(result.stdout)["instances"]  # type: ignore[misc]
    assert instance["log_file"].startswith(where.format(checkout=comfy_tree) + "/comfyrig-")


def test_manager_is_an_alias(run: InProcessCli, comfy_tree: Path) -> None:
    run.gpus(2)
    result = run("--dry-run", "--json", "--manager", env={"COMFYUI_DIR": str(comfy_tree), "COMFYUI_PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    assert "--enable-manager" in json.dumps(_plan(result.stdout)["instances"])


@pytest.mark.parametrize("args", [["--lowvram"], ["launch", "--dual", "--lowvram"]])
def test_a_comfyui_flag_before_dashes_says_where_it_goes(run: InProcessCli, args: list[str]) -> None:
    run.gpus(2)
    result = run(*args)
    assert result.returncode == 2
    assert "ComfyUI flag, it goes after --: comfyrig -- --lowvram" in " ".join(result.stderr.replace("│", " ").split())


def test_cpu_with_workers_is_refused(run: InProcessCli) -> None:
    run.gpus(2)
    result = run("launch", "--cpu", "--workers", "--dry-run")
    assert result.returncode == 2 and "--workers starts one ComfyUI per GPU, and --cpu uses none" in result.stderr


def test_json_without_dry_run_says_so(run: InProcessCli) -> None:
    run.gpus(2)
    result = run("launch", "--json")
    assert result.returncode == 2 and "--json prints the launch plan and needs --dry-run" in result.stderr

