"""Model planning: read model headers, decide which GPU mode and DisTorch
allocation fits them on these GPUs, rewrite workflows to match (``comfyrig plan``)."""

from .components import BlockGroup, Component, ModelInfo, analyze_model
from .fit import DisTorchPlan, FitPlan, Ledger, PartPlacement, Reserve, default_reserve, plan_fit
from .header import ModelHeader, TensorInfo, read_header
from .rewrite import NodeChange, find_loaders, rewrite_workflow

__all__ = [
    "BlockGroup",
    "Component",
    "DisTorchPlan",
    "FitPlan",
    "Ledger",
    "ModelHeader",
    "ModelInfo",
    "NodeChange",
    "PartPlacement",
    "Reserve",
    "TensorInfo",
    "analyze_model",
    "default_reserve",
    "find_loaders",
    "plan_fit",
    "read_header",
    "rewrite_workflow",
]
