"""Pieces of the install command that need no install."""

import sys
from dataclasses import replace
from pathlib import Path

from comfyrig.cli.install_cmd import _companions_import
from comfyrig.host.gpus.torchcheck import TorchReport
from comfyrig.install.plan import InstallOptions, plan_install
from comfyrig.install.state import ExistingState

from ..conftest import inventory_of


def test_torchvision_built_for_another_torch_is_a_problem(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('RuntimeError: operator torchvision::nms does not exist', "
                    "file=sys.stderr)\nsys.exit(1)\n")
    fake.chmod(0o755)
    plan = plan_install(inventory_of(1), ExistingState.fresh(tmp_path / "C"), InstallOptions(target=tmp_path / "C", latest_tag="v1.0"))
    plan = replace(plan, venv_python=fake)
    ok = TorchReport(python=str(fake), ok=True)
    checked = _companions_import(ok, plan, {})
    assert not checked.ok and "torchvision::nms" in checked.problems[0] and "pip.conf" in checked.problems[0]
    assert _companions_import(ok, replace(plan, torch_packages=("torch",)), {}) is ok
