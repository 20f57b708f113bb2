"""Model planning: read model headers, decide which GPU mode, DisTorch allocation
and ComfyUI multi-GPU nodes fit them on these GPUs, rewrite workflows to match
(``comfyrig plan``)."""

from ..comfy.multigpu import NativeNodes, native_nodes
from .components import BlockGroup, Component, ModelInfo, analyze_model
from .fit import CfgSplit, DisTorchPlan, FitPlan, Ledger, NativePlan, PartPlacement, Reserve, default_reserve, plan_fit
from .header import ModelHeader, TensorInfo, read_header
from .native import SamplerCfg, plan_native, sampler_cfgs
from .rewrite import NodeChange, find_loaders, rewrite_workflow

__all__ = [
    "BlockGroup",
    "CfgSplit",
    "Component",
    "DisTorchPlan",
    "FitPlan",
    "Ledger",
    "ModelHeader",
    "ModelInfo",
    "NativeNodes",
    "NativePlan",
    "NodeChange",
    "PartPlacement",
    "Reserve",
    "SamplerCfg",
    "TensorInfo",
    "analyze_model",
    "default_reserve",
    "find_loaders",
    "native_nodes",
    "plan_fit",
    "plan_native",
    "read_header",
    "rewrite_workflow",
    "sampler_cfgs",
]
