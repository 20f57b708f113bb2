"""``comfyrig --workers --ray``: the errors a user meets before any actor starts, one paragraph each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import Cli

pytestmark = pytest.mark.e2e  # runs the command


def test_ray_needs_workers_and_the_gateway(cli: Cli) -> None:
    for args in (["--ray", "auto"], ["--workers", "--no-gateway", "--ray", "auto"]):
        done = cli("launch", *args)
        assert done.returncode != 0 and "--ray" in done.stderr and "--workers" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_ray_refuses_local_gpu_selection(cli: Cli) -> None:
    done = cli("--workers", "--ray", "auto", "--gpus", "0,1")
    assert done.returncode != 0 and "GPU and CPU selection" in done.stderr and "Traceback" not in done.stderr


def test_without_ray_installed_it_names_the_extra(cli: Cli, tmp_path: Path) -> None:
    probe = ("import sys; sys.modules['ray'] = None; from comfyrig.cli import main; "
             "sys.exit(main(['--workers', '--ray', 'auto', '--dry-run']))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli.env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0 and "pip install 'comfyrig[ray]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_where_nothing_answers_is_said_at_once(cli: Cli) -> None:
    pytest.importorskip("ray")
    done = cli("--workers", "--ray", "127.0.0.1:1", "--dry-run", timeout=30)
    assert done.returncode != 0 and "Nothing answers at 127.0.0.1:1" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_max_workers_needs_ray(cli: Cli) -> None:
    done = cli("--workers", "--max-workers", "2")
    assert done.returncode != 0 and "--max-workers" in done.stderr and "--ray" in done.stderr
