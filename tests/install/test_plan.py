"""plan_install is pure: hand-made states in, steps out."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from comfyrig.errors import ConfigError, NotComfyUIError
from comfyrig.host.gpus.simulated import parse_simulated
from comfyrig.install.nodes import MULTIGPU_REFS, MULTIGPU_UNDECLARED
from comfyrig.install.plan import InstallOptions, plan_install
from comfyrig.install.state import UNDECLARED_REQUIREMENTS, ExistingState, GitState, PackState, VenvState

T = Path("/srv/ComfyUI")
PY = str(T / ".venv/bin/python")
V076 = "f" * 40
GPUS = parse_simulated({"driver_version": "570.86", "cuda_driver_version": "12.8",
                        "gpus": [{"name": "RTX 3090", "memory_total_mib": 24576}] * 2})
FAMILY = {"torch": "2.9.0+cu128", "torchvision": "0.24.0+cu128", "torchaudio": "2.9.0+cu128"}

UNDECLARED = str(UNDECLARED_REQUIREMENTS)


def opts(**kw: Any) -> InstallOptions:
    base: dict[str, Any] = {"target": T, "latest_tag": "v0.3.76", "python": "/usr/bin/python3"}
    return InstallOptions(**{**base, **kw})


def good_venv(**kw: Any) -> VenvState:
    base: dict[str, Any] = {"path": T / ".venv", "exists": True, "runs": True, "pip": True, "python_version": "3.12.3",
                                "torch_version": "2.9.0+cu128", "torch_build": "cu128", "family": FAMILY,
                                "unmet": {"requirements.txt": (), UNDECLARED: ()}}
    return VenvState(**{**base, **kw})


def installed(**kw: Any) -> ExistingState:
    base: dict[str, Any] = {
        "target": T, "exists": True, "empty": False, "is_comfyui": True,
        "git": GitState(head=V076, refs_at_head=("v0.3.76",), origin="https://github.com/comfyanonymous/ComfyUI"),
        "venv": good_venv(), "comfyui_version": "0.3.76", "torch_family": ("torch", "torchvision", "torchaudio"),
        "has_requirements": True, "env_file": True, "supported_flags": frozenset({"--enable-manager"}),
        "user_paths": ("models", "custom_nodes", "user", "output"),
    }
    return ExistingState(**{**base, **kw})


def keys(plan: Any, todo: bool = False) -> list[str]:
    return [s.key for s in (plan.todo if todo else plan.steps)]


def test_fresh_install_plan() -> None:
    plan = plan_install(GPUS, ExistingState.fresh(T), opts())
    assert keys(plan) == ["clone", "checkout", "venv", "torch", "requirements", "env-file"]
    assert not any(s.satisfied for s in plan.steps)
    step = {s.key: s for s in plan.steps}
    assert step["clone"].argv == ("git", "clone", "--no-checkout", "https://github.com/comfyanonymous/ComfyUI", str(T))
    assert step["checkout"].argv == ("git", "-C", str(T), "checkout", "--detach", "v0.3.76")
    assert step["venv"].argv == ("/usr/bin/python3", "-m", "venv", str(T / ".venv"))
    assert step["torch"].argv == (PY, "-m", "pip", "install", "torch", "torchvision", "torchaudio",
                                  "--index-url", "https://download.pytorch.org/whl/cu128")
    assert step["requirements"].pending and step["requirements"].argv[-4:] == ("-r", str(T / "requirements.txt"), "-r", UNDECLARED)
    assert step["env-file"].write is not None and step["env-file"].write[0] == T / ".env"
    assert "GPU 1: RTX 3090" in step["env-file"].write[1]
    assert plan.ref == "v0.3.76" and "ls-remote" in plan.ref_source and plan.torch is not None and plan.torch.tag == "cu128"
    json.dumps(plan.to_json())


def test_unresolved_tag_leaves_the_checkout_pending_with_a_warning() -> None:
    plan = plan_install(GPUS, ExistingState.fresh(T), opts(latest_tag=None, latest_problem="github.com unreachable"))
    assert plan.step("checkout").pending and "unreachable" in plan.warnings[0]  # type: ignore[union-attr]


def test_complete_install_has_nothing_to_do() -> None:
    plan = plan_install(GPUS, installed(), opts(latest_tag=None))
    assert keys(plan, todo=True) == []
    assert plan.step("checkout").check.startswith("ComfyUI 0.3.76 at ffffffffffff is here")  # type: ignore[union-attr]


def test_missing_venv_is_rebuilt_and_nothing_else_moves() -> None:
    state = installed(venv=VenvState(T / ".venv", exists=False))
    plan = plan_install(GPUS, state, opts())
    assert keys(plan, todo=True) == ["venv", "torch", "requirements"]
    assert plan.step("venv").argv == ("/usr/bin/python3", "-m", "venv", str(T / ".venv"))  # type: ignore[union-attr]


def test_broken_venv_is_cleared_in_place() -> None:
    state = installed(venv=VenvState(T / ".venv", exists=True, problem="python3.11 was removed"))
    venv = plan_install(GPUS, state, opts()).step("venv")
    assert venv is not None and venv.argv[-2:] == ("--clear", str(T / ".venv")) and "removed" in venv.why


def test_venv_without_pip_gets_ensurepip() -> None:
    venv = plan_install(GPUS, installed(venv=good_venv(pip=False)), opts()).step("venv")
    assert venv is not None and venv.argv == (PY, "-m", "ensurepip", "--upgrade")


def test_wrong_torch_is_replaced() -> None:
    state = installed(venv=good_venv(torch_version="2.9.0+cpu", torch_build="cpu"))
    plan = plan_install(GPUS, state, opts())
    assert keys(plan, todo=True) == ["torch-uninstall", "torch"]
    assert plan.step("torch-uninstall").argv == (PY, "-m", "pip", "uninstall", "--yes", "torch", "torchvision", "torchaudio")  # type: ignore[union-attr]
    assert "cpu build" in plan.step("torch-uninstall").why  # type: ignore[union-attr]


def test_torchvision_missing_means_torch_step_runs_again() -> None:
    state = installed(venv=good_venv(family={**FAMILY, "torchvision": None}))
    assert keys(plan_install(GPUS, state, opts()), todo=True) == ["torch"]


def test_unmet_requirements_are_named() -> None:
    state = installed(venv=good_venv(unmet={"requirements.txt": ("av>=14.2.0",), UNDECLARED: ()}))
    step = plan_install(GPUS, state, opts()).step("requirements")
    assert step is not None and not step.satisfied and "av>=14.2.0" in step.why


def test_offline_wheels_and_local_torch_folder() -> None:
    plan = plan_install(GPUS, ExistingState.fresh(T), opts(torch_index="/w/cu128", wheels=Path("/w/pkgs")))
    assert plan.step("torch").argv[-5:] == ("--no-index", "--find-links", "/w/cu128", "--find-links", "/w/pkgs")  # type: ignore[union-attr]
    assert plan.step("requirements").argv[-3:] == ("--no-index", "--find-links", "/w/pkgs")  # type: ignore[union-attr]


def test_explicit_ref_moves_an_existing_checkout() -> None:
    plan = plan_install(GPUS, installed(), opts(ref="v0.3.64"))
    assert keys(plan, todo=True) == ["fetch", "checkout"]
    assert plan.step("checkout").argv[-1] == "v0.3.64"  # type: ignore[union-attr]
    assert keys(plan_install(GPUS, installed(), opts(ref="v0.3.76")), todo=True) == []
    assert keys(plan_install(GPUS, installed(), opts(ref=V076[:9])), todo=True) == []


def test_ref_on_a_checkout_without_git_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a git checkout"):
        plan_install(GPUS, installed(git=None), opts(ref="v0.3.64"))


def test_foreign_folder_is_refused_without_force() -> None:
    state = replace(ExistingState.fresh(T), exists=True, empty=False, entries=("notes.txt", "photos"))
    with pytest.raises(NotComfyUIError, match=re.escape("notes.txt, photos")) as caught:
        plan_install(GPUS, state, opts())
    assert "--force" in str(caught.value) and caught.value.exit_code == 2
    plan = plan_install(GPUS, state, opts(force=True))
    assert keys(plan)[:4] == ["git-init", "remote", "fetch", "checkout"] and plan.warnings


def test_interrupted_clone_is_finished_not_restarted() -> None:
    state = replace(ExistingState.fresh(T), exists=True, empty=False,
                    git=GitState(head=V076, refs_at_head=("master", "origin/master"), origin="x"))
    assert keys(plan_install(GPUS, state, opts()))[:2] == ["checkout", "venv"]


def test_multigpu_on_a_fresh_install_follows_the_tag() -> None:
    plan = plan_install(GPUS, ExistingState.fresh(T), opts(packs=("multigpu",)))
    step = {s.key: s for s in plan.steps}
    folder = str(T / "custom_nodes/ComfyUI-MultiGPU")
    assert step["multigpu:clone"].argv == ("git", "clone", "--no-checkout", "https://github.com/pollockjj/ComfyUI-MultiGPU", folder)
    assert step["multigpu:checkout"].argv == ("git", "-C", folder, "checkout", "--detach", MULTIGPU_REFS[1].commit)
    assert step["multigpu:requirements"].pending


def test_multigpu_at_another_commit_is_kept_unless_forced() -> None:
    pack = PackState(T / "custom_nodes/ComfyUI-MultiGPU", exists=True, empty=False,
                     git=GitState(head="a" * 40), loadable=True)
    state = installed(packs={"multigpu": pack})
    plan = plan_install(GPUS, state, opts(packs=("multigpu",)))
    assert keys(plan, todo=True) == [] and "kept as it is" in plan.warnings[0]
    forced = plan_install(GPUS, state, opts(packs=("multigpu",), force=True))
    assert keys(forced, todo=True) == ["multigpu:fetch", "multigpu:checkout", "multigpu:undeclared"]
    at_ref = replace(pack, git=GitState(head=MULTIGPU_REFS[1].commit))
    satisfied = good_venv(unmet={"requirements.txt": (), UNDECLARED: (), str(MULTIGPU_UNDECLARED): ()})
    assert keys(plan_install(GPUS, installed(packs={"multigpu": at_ref}, venv=satisfied), opts(packs=("multigpu",))), todo=True) == []


def test_multigpu_v2_5_gets_accelerate_which_it_imports_undeclared() -> None:
    # v2.5.x (ComfyUI 0.3.64/0.3.76) has no requirements.txt but its wanvideo.py imports accelerate.
    pack = PackState(T / "custom_nodes/ComfyUI-MultiGPU", exists=True, empty=False,
                     git=GitState(head=MULTIGPU_REFS[1].commit), loadable=True)
    missing = good_venv(unmet={"requirements.txt": (), UNDECLARED: (), str(MULTIGPU_UNDECLARED): ("accelerate",)})
    plan = plan_install(GPUS, installed(packs={"multigpu": pack}, venv=missing), opts(packs=("multigpu",)))
    step = plan.step("multigpu:undeclared")
    assert keys(plan, todo=True) == ["multigpu:undeclared"] and step is not None
    assert step.argv[-2:] == ("-r", str(MULTIGPU_UNDECLARED)) and "accelerate" in step.why
    assert "accelerate" in MULTIGPU_UNDECLARED.read_text()
    # v2.6.x (ComfyUI with comfy/memory_management.py, e.g. 0.24.0) does not import it.
    new = installed(packs={"multigpu": replace(pack, git=GitState(head=MULTIGPU_REFS[0].commit))}, venv=missing,
                    comfyui_version="0.24.0", present_files=frozenset({"comfy/memory_management.py"}))
    assert plan_install(GPUS, new, opts(packs=("multigpu",))).step("multigpu:undeclared") is None


def test_manager_is_a_plain_clone() -> None:
    plan = plan_install(GPUS, installed(), opts(packs=("manager",)))
    clone = plan.step("manager:clone")
    assert clone is not None and clone.argv[:2] == ("git", "clone") and "--no-checkout" not in clone.argv


def test_nodes_scope_needs_comfyui_and_uses_its_interpreter() -> None:
    with pytest.raises(NotComfyUIError):
        plan_install(GPUS, ExistingState.fresh(T), opts(scope="nodes", packs=("multigpu",)))
    pack = PackState(T / "custom_nodes/ComfyUI-Manager", exists=True, empty=False, git=GitState(head="b" * 40),
                     loadable=True, has_requirements=True)
    state = installed(packs={"manager": pack}, venv=good_venv(unmet={"custom_nodes/ComfyUI-Manager/requirements.txt": ("gitpython",)}))
    plan = plan_install(GPUS, state, opts(scope="nodes", packs=("manager",), venv_python=Path("/opt/py")))
    assert keys(plan, todo=True) == ["manager:requirements"]
    assert plan.step("manager:requirements").argv[0] == "/opt/py"  # type: ignore[union-attr]


def test_env_file_is_never_overwritten_and_can_be_skipped() -> None:
    assert plan_install(GPUS, installed(env_file=True), opts()).step("env-file").satisfied  # type: ignore[union-attr]
    assert plan_install(GPUS, installed(env_file=False), opts(write_env=False)).step("env-file") is None


def test_cpu_machine_gets_cpu_wheels() -> None:
    cpu = parse_simulated([])
    plan = plan_install(cpu, ExistingState.fresh(T), opts())
    assert plan.step("torch").argv[-1] == "https://download.pytorch.org/whl/cpu"  # type: ignore[union-attr]


def test_half_installed_packages_are_reinstalled_over() -> None:
    state = installed(venv=good_venv(broken={"torch": "2.9.0+cu128", "av": "14.2.0"}))
    plan = plan_install(GPUS, state, opts())
    assert keys(plan, todo=True) == ["torch", "repair-packages"]
    assert plan.step("torch").argv[6:8] == ("torchaudio", "--ignore-installed")  # type: ignore[union-attr]
    assert plan.step("repair-packages").argv[-1] == "av==14.2.0"  # type: ignore[union-attr]
