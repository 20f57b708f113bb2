"""``comfyrig install``: from a bare machine to ComfyUI with the right torch.

torch_choice (pure) picks the PyTorch index for the driver; nodes holds the
node-pack compatibility table; state inspects the disk; plan (pure) turns
inventory + state + options into steps; steps runs them; envtemplate writes
the .env.
"""

from .plan import COMFYUI_REPO, InstallOptions, InstallPlan, Step, plan_install
from .state import ExistingState, inspect_state
from .steps import Installer, InstallResult, latest_release_tag, run_command
from .torch_choice import TorchChoice, choose_torch

__all__ = [
    "COMFYUI_REPO",
    "ExistingState",
    "InstallOptions",
    "InstallPlan",
    "InstallResult",
    "Installer",
    "Step",
    "TorchChoice",
    "choose_torch",
    "inspect_state",
    "latest_release_tag",
    "plan_install",
    "run_command",
]
