"""comfyrig: run ComfyUI on every GPU of a machine, correctly and visibly."""

__version__ = "0.1.0"

from .config import CliOverrides, GpuRequest, Selection, Settings, resolve_settings, select_gpus  # noqa: E402
from .errors import ComfyrigError, ConfigError, LaunchError, SelectionError  # noqa: E402
from .host.gpus import Gpu, Inventory, probe_inventory  # noqa: E402
from .launch.plan import InstanceSpec, LaunchPlan, plan_launch  # noqa: E402

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
    "SelectionError",
    "Selection",
    "Settings",
    "__version__",
    "plan_launch",
    "probe_inventory",
    "resolve_settings",
    "select_gpus",
]
