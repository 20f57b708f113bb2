"""The table of commands: name, the module that registers it, one line of help.

It is data, with no imports, so that ``comfyrig --help`` and an unknown
command are answered from it without importing Typer or any command module;
a command's module is imported only when that command runs (or shows its own
``--help``). A test checks that each module registers exactly its rows.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "DEFAULT_COMMAND", "DESCRIPTION"]

DESCRIPTION = (
    "Run ComfyUI on every GPU of this machine, correctly and visibly. "
    "With no command, 'comfyrig [OPTIONS]' means 'comfyrig launch [OPTIONS]'."
)
DEFAULT_COMMAND = "launch"

# name -> (module under comfyrig.cli, one line for the root help). In the
# order the root help lists them: the everyday commands first.
COMMANDS: dict[str, tuple[str, str]] = {
    "launch": ("launch_cmd", "Start ComfyUI in the chosen GPU mode and supervise it (the default command)."),
    "gateway": ("gateway_cmd", "Serve one ComfyUI URL in front of ComfyUI servers that are already running."),
    "gpus": ("gpus_cmd", "List the GPUs and show which ones the chosen mode selects."),
    "config": ("config_cmd", "Show every effective setting and where it came from."),
    "plan": ("plan_cmd", "Plan how model files fit on the GPUs; optionally rewrite a workflow for MultiGPU."),
    "doctor": ("doctor_cmd", "Check the driver, GPUs, ComfyUI, torch, .env, flags, port and node packs."),
    "status": ("status_cmd", "List the ComfyUI instances comfyrig started."),
    "stop": ("status_cmd", "Stop ComfyUI instances comfyrig started."),
    "monitor": ("monitor_cmd", "Watch the GPUs, their processes and the ComfyUI instances, live."),
    "batch": ("batch_cmd", "Run a workflow once per variation on every GPU, resumably."),
    "install": ("install_cmd", "Install ComfyUI with the PyTorch build this machine's driver runs."),
    "nodes": ("install_cmd", "Add node packs (ComfyUI-MultiGPU, ComfyUI-Manager) to a ComfyUI checkout."),
}
