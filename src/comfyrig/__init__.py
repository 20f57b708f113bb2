"""comfyrig: run ComfyUI on every GPU of a machine, correctly and visibly."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time, and mypy honours this form
if TYPE_CHECKING:
    from typing import Any

    from .config import (
        CliOverrides,
        GpuRequest,
        Selection,
        Settings,
        resolve_settings,
        select_gpus,
    )
    from .errors import ComfyrigError, ConfigError, LaunchError, SelectionError
    from .host.gpus import Gpu, Inventory, probe_inventory
    from .launch.plan import InstanceSpec, LaunchPlan, plan_launch

# Which submodule defines each public name. They are imported on first use
# (PEP 562), not here: every 'comfyrig' command imports this package first,
# and 'comfyrig --help' must not pay for the settings, .env and GPU machinery.
_EXPORTS: dict[str, str] = {
    "CliOverrides": ".config",
    "GpuRequest": ".config",
    "Selection": ".config",
    "Settings": ".config",
    "resolve_settings": ".config",
    "select_gpus": ".config",
    "ComfyrigError": ".errors",
    "ConfigError": ".errors",
    "LaunchError": ".errors",
    "SelectionError": ".errors",
    "Gpu": ".host.gpus",
    "Inventory": ".host.gpus",
    "probe_inventory": ".host.gpus",
    "InstanceSpec": ".launch.plan",
    "LaunchPlan": ".launch.plan",
    "plan_launch": ".launch.plan",
}

__all__ = [
    "CliOverrides",
    "ComfyrigError",
    "ConfigError",
    "Gpu",
    "GpuRequest",
    "InstanceSpec",
    "Inventory",
    "LaunchError",
    "LaunchPlan",
    "Selection",
    "SelectionError",
    "Settings",
    "__version__",
    "plan_launch",
    "probe_inventory",
    "resolve_settings",
    "select_gpus",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next look-up skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
