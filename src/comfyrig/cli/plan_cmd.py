"""``comfyrig plan``: which mode, flags and DisTorch allocation fit these models on these GPUs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from ..comfy.args import comfy_args
from ..comfy.checkout import comfyui_version, flag_table
from ..comfy.multigpu import native_nodes
from ..comfy.vram import vram_facts
from ..comfy.workflow import Prompt, Workflow, load_workflow, require_api_format
from ..config.modes import select_gpus
from ..errors import ConfigError, ModelFileError, WorkflowError
from ..files import check_output_file
from ..fit.components import ModelInfo, analyze_model
from ..fit.fit import GIB, FitPlan, Reserve, default_reserve, plan_fit
from ..fit.native import plan_native, sampler_cfgs
from ..fit.ram import mem_available
from ..fit.rewrite import NodeChange, find_loaders, model_folders, rewrite_workflow, suggested_loaders, suggested_nodes
from ..host.gpus.probe import probe_inventory
from ..ui.console import make_console
from ..ui.fit_view import plan_view
from . import options as o
from .app import command
from .report import print_json

__all__: list[str] = []

Models = Annotated[list[Path] | None, typer.Argument(
    help="Model files (.safetensors, .gguf) or folders of shards; read from their headers only.", show_default=False)]
ReserveGb = Annotated[float | None, typer.Option(
    "--reserve", metavar="GB", callback=o.bounded("--reserve", o.Bounds(minimum=0, maximum=1_000_000, unit="GiB")), help="Working memory (GiB) kept free on the compute GPU; default from family and resolution.",
    show_default=False)]
Resolution = Annotated[str | None, typer.Option(
    "--resolution", metavar="WxH", help="Image size for the default reserve (default: the family's native size).",
    show_default=False)]
Batch = Annotated[int, typer.Option("--batch", callback=o.bounded("--batch", o.Bounds(minimum=1, maximum=4096)), help="Batch size for the default reserve.")]
RamGb = Annotated[float | None, typer.Option(
    "--ram", metavar="GB", callback=o.bounded("--ram", o.Bounds(minimum=0, maximum=1_000_000, unit="GiB")), help="System RAM (GiB) for offloaded weights (default: MemAvailable).", show_default=False)]
WorkflowFile = Annotated[Path | None, typer.Option(
    "--workflow", metavar="IN.json", help="An API-format workflow whose loaders to rewrite.", show_default=False)]
Write = Annotated[Path | None, typer.Option(
    "--write", metavar="OUT.json", help="Where to write the rewritten workflow.", show_default=False)]


@command("plan", help="Plan how MODEL files fit on the GPUs: mode, DisTorch allocation, ComfyUI flags; "
                      "optionally rewrite a workflow for ComfyUI's multi-GPU nodes (--comfyui-dir, 0.24.0+) "
                      "or ComfyUI-MultiGPU.")
def plan_cmd(
    models: Models = None,
    auto: o.Auto = False,
    dual: o.Dual = False,
    multi: o.Multi = False,
    single: o.Single = None,
    gpus: o.Gpus = None,
    cpu: o.Cpu = False,
    reserve: ReserveGb = None,
    resolution: Resolution = None,
    batch: Batch = 1,
    ram: RamGb = None,
    workflow: WorkflowFile = None,
    write: Write = None,
    comfyui_dir: o.ComfyDir = None,
    env_file: o.EnvFile = None,
    json_out: o.JsonOut = False,
) -> int:
    settings = o.settings_from(
        o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu,
                    comfyui_dir=comfyui_dir, env_file=env_file)
    )
    if write is not None and workflow is None:
        raise ConfigError("--write needs --workflow IN.json: the workflow to rewrite.")
    if write is not None:
        check_output_file(write, "--write")  # before the models are read, not after
    size = _resolution(resolution)
    wf = _api_workflow(workflow) if workflow is not None else None
    paths = list(models or [])
    if not paths and wf is not None:
        paths = _workflow_models(wf, settings.comfyui_dir.value)
    if not paths:
        raise ConfigError("Give at least one MODEL file or folder (or --workflow with --comfyui-dir to find its files).")
    _refuse_repeats(paths)
    infos = [analyze_model(p) for p in paths]

    request = settings.gpu_request.value
    inventory = probe_inventory(settings.fake_gpus)
    selection = select_gpus(request, inventory)
    cpu_only = selection.is_cpu and request.kind != "auto"
    if selection.is_cpu and not cpu_only:
        why = inventory.problem or "the driver reports no GPU"
        raise ConfigError(
            f"No GPU to plan for: {why.rstrip('.')}.",
            hint="Plan for the CPU with --cpu, or simulate GPUs with COMFYRIG_FAKE_GPUS.",
        )
    # How the target ComfyUI manages VRAM, read from its checkout's flags (unknown without one).
    checkout = settings.comfyui_dir.value
    table = flag_table(checkout) if checkout is not None else None
    vram = vram_facts(comfy_args(settings, table), comfyui_version(checkout) if checkout is not None else None)
    memory_plan = plan_fit(
        infos,
        selection.gpus,
        reserve=_reserve(infos, reserve, size, batch),
        ram_available=int(ram * GIB) if ram is not None else mem_available(),
        cpu_only=cpu_only,
        reserve_from_cli=reserve is not None,
        vram=vram,
    )
    # The target ComfyUI's own multi-GPU nodes, read from its checkout (unknown without one).
    nodes = native_nodes(checkout) if checkout is not None else None
    plan = plan_native(memory_plan, selection.gpus, nodes, sampler_cfgs(wf) if wf is not None else None)
    changes: list[NodeChange] = []
    notes: list[str] = []
    if wf is not None:
        new, changes, notes = rewrite_workflow(wf, plan, infos)
        if write is not None:
            _write(write, new.prompt)
    if json_out:
        print_json(_report(infos, plan, changes, notes, write))
    else:
        make_console(settings.environ).print(plan_view(infos, plan, changes, notes, str(write) if write else None))
    return 1 if plan.verdict == "too_big" else 0


def _resolution(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text)
    if not m or int(m.group(1)) == 0 or (m.group(2) is not None and int(m.group(2)) == 0):
        raise ConfigError(f"--resolution {text!r}: give WIDTHxHEIGHT in pixels, e.g. 1024x1024.")
    w = int(m.group(1))
    return w, int(m.group(2) or w)


def _reserve(infos: list[ModelInfo], gb: float | None, size: tuple[int, int] | None, batch: int) -> Reserve:
    dm = max(
        (m for m in infos if m.of_kind("diffusion_model")),
        key=lambda m: sum(c.gpu_bytes for c in m.of_kind("diffusion_model")),
        default=None,
    )
    family, factor = (dm.family, dm.memory_usage_factor) if dm else ("unknown", 2.0)
    default = default_reserve(family, factor, size, batch)
    if gb is None:
        return default
    return Reserve(int(gb * GIB), "cli", default.family, default.resolution, batch, default.activations)


def _api_workflow(path: Path) -> Workflow:
    """The workflow at ``path``, in the API format: without a server to ask, the UI format cannot be read."""
    why = ("comfyrig plan reads the API format only, since converting the UI format needs a running "
           "ComfyUI's node list (comfyrig batch does that)")
    return require_api_format(load_workflow(path), why)


def _workflow_models(wf: Workflow, comfyui_dir: Path | None) -> list[Path]:
    """Find the files a workflow's loaders name under ComfyUI's models/ folders."""
    loaders = find_loaders(wf)
    if not loaders:
        raise WorkflowError(f"The workflow {wf.source} has no loader node (CheckpointLoaderSimple, UNETLoader, CLIPLoader, VAELoader, ...).")
    if comfyui_dir is None:
        raise ConfigError(
            "No MODEL given and no ComfyUI folder to find the workflow's files in.",
            hint="Pass the model files, or --comfyui-dir DIR (COMFYUI_DIR).",
        )
    found: list[Path] = []
    for loader in loaders:
        for name in loader.files:
            candidates = [comfyui_dir / "models" / folder / name for folder in model_folders(loader.layout)]
            hit = next((c for c in candidates if c.exists()), None)
            if hit is None:
                raise ModelFileError(
                    f"Node {loader.node_id} ({loader.class_type}) loads {name!r}, which is in none of "
                    + ", ".join(str(c.parent) for c in candidates) + "."
                )
            if hit not in found:
                found.append(hit)
    return found


def _write(path: Path, workflow: Prompt) -> None:
    try:
        path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise WorkflowError(f"Cannot write {path} ({exc.strerror or exc}).") from exc


def _report(infos: list[ModelInfo], plan: FitPlan, changes: list[NodeChange], notes: list[str], write: Path | None) -> dict[str, Any]:
    return {
        "models": [m.to_json() for m in infos],
        **plan.to_json(),
        "loaders": [{"files": files, "node": c.new_class, "inputs": dict(c.inputs)} for files, c in suggested_loaders(plan, infos)],
        "native_nodes": [
            {"files": files, "node": c.new_class, "inputs": dict(c.inputs), "where": c.note} for files, c in suggested_nodes(plan, infos)
        ],
        "workflow": {"written": str(write) if write else None, "changes": [c.to_json() for c in changes], "notes": notes},
    }


def _refuse_repeats(paths: list[Path]) -> None:
    """The same model named twice (or by two names: a link, a relative path) would be counted twice."""
    seen: dict[tuple[int, int], Path] = {}
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue  # analyze_model names a missing file
        key = (st.st_dev, st.st_ino)
        if key in seen:
            same = "twice" if seen[key] == path else f"twice (also as {seen[key]})"
            raise ConfigError(f"The model {path} is given {same}; each model counts once in the plan.")
        seen[key] = path
