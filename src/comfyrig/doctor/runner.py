"""Running every check, in the order the table shows them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .checks_comfyui import (
    check_args,
    check_comfyui_dir,
    check_multigpu,
    check_python,
    check_running,
    check_settings,
    check_version,
)
from .checks_env import check_env_file, check_env_keys, check_env_pytorch
from .checks_gpu import check_device_order, check_driver, check_gpus, check_mode, check_vram
from .checks_multigpu import check_cfg_split, check_multigpu_native, check_multigpu_running
from .checks_net import check_cors, check_gateway, check_listen, check_port
from .checks_torch import check_torch_build, check_torch_cuda_version, check_torch_devices, check_torch_import
from .context import DoctorContext
from .result import CheckResult

__all__ = ["CHECKS", "Check", "exit_code", "run_checks"]

Check = Callable[[DoctorContext], CheckResult]

CHECKS: tuple[Check, ...] = (
    check_settings,
    check_driver,
    check_gpus,
    check_mode,
    check_device_order,
    check_comfyui_dir,
    check_python,
    check_version,
    check_torch_import,
    check_torch_build,
    check_torch_devices,
    check_torch_cuda_version,
    check_env_file,
    check_env_keys,
    check_env_pytorch,
    check_args,
    check_port,
    check_listen,
    check_cors,
    check_gateway,
    check_multigpu_native,
    check_multigpu,
    check_cfg_split,
    check_vram,
    check_running,
    check_multigpu_running,
)


def run_checks(ctx: DoctorContext, checks: Sequence[Check] = CHECKS) -> list[CheckResult]:
    return [check(ctx) for check in checks]


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when nothing failed (warnings included), 1 otherwise."""
    return 1 if any(r.status == "fail" for r in results) else 0
