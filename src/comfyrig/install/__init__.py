"""``comfyrig install``: from a bare machine to ComfyUI with the right torch.

torch_choice (pure) picks the PyTorch index for the driver; nodes holds the
node-pack compatibility table.
"""

from .torch_choice import TorchChoice, choose_torch

__all__ = ["TorchChoice", "choose_torch"]
