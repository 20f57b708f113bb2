"""Rich renderings of a model plan: pure functions, plan -> renderable."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..fit.components import ModelInfo
from ..fit.fit import GIB, FitPlan
from ..fit.rewrite import NodeChange, suggested_loaders, suggested_nodes

__all__ = ["plan_view"]

_VERDICT_STYLE = {"single": "bold green", "multi": "bold green", "offload": "bold yellow", "too_big": "bold red", "cpu": "bold yellow"}


def _gib(n: int | None) -> str:
    if n is None:
        return "?"
    if abs(n) < GIB // 10 and n:
        return f"{n / (1 << 20):.0f} MiB"
    return f"{n / GIB:.2f} GiB"


def models_table(models: Sequence[ModelInfo]) -> Table:
    table = Table(title="Models (from headers only)", caption="GiB = 2**30 bytes; 'on GPU': the size once ComfyUI loaded it")
    for column in ("file", "component", "in file", "on GPU", "dtypes", "repeated blocks"):
        # File names fold rather than end in an ellipsis: they are what the user typed.
        table.add_column(column, justify="right" if column in ("in file", "on GPU") else "left",
                         overflow="fold" if column == "file" else "ellipsis")
    for m in models:
        fam = f", {m.family}" if m.family != "unknown" else ""
        first = f"{m.name}\n({m.format}, {m.layout}{fam})"
        for c in m.components:
            dtypes = ", ".join(f"{d} {_gib(n)}" for d, n in c.dtype_bytes.items())
            blocks = ", ".join(f"{b.count} × {b.name} (≤ {_gib(b.bytes_max)})" for b in c.blocks) or "-"
            label = c.label + ("" if c.loaded else " (not loaded)")
            table.add_row(first, label, _gib(c.file_bytes), _gib(c.gpu_bytes) if c.loaded else "-", dtypes, blocks)
            first = ""
    return table


def devices_table(plan: FitPlan) -> Table:
    table = Table(title="Per device", caption="planned includes the working-memory reserve; headroom = free - planned", show_lines=True)
    for column in ("device", "GPU", "free", "planned", "headroom", "what"):
        table.add_column(column, justify="right" if column in ("free", "planned", "headroom") else "left")
    for ledger in plan.ledgers:
        if ledger.device == "cpu" and not ledger.items:
            continue
        name = f"{ledger.gpu.index}: {ledger.gpu.name}" if ledger.gpu else "system RAM"
        headroom = ledger.headroom
        style = "red" if headroom is not None and headroom < 0 else ""
        what = "\n".join(f"{_gib(n)}  {w}" for w, n in ledger.items)
        table.add_row(
            ledger.device, name, _gib(ledger.capacity), _gib(ledger.planned),
            Text(_gib(headroom), style=style), what,
        )
    return table


def plan_view(
    models: Sequence[ModelInfo],
    plan: FitPlan,
    changes: Sequence[NodeChange] = (),
    notes: Sequence[str] = (),
    written: str | None = None,
) -> RenderableType:
    parts: list[RenderableType] = [models_table(models), devices_table(plan)]
    parts.append(Text(plan.headline, style=_VERDICT_STYLE[plan.verdict]))
    for reason in plan.reasons:
        parts.append(Text(f"  {reason}"))
    parts.append(Text(f"  Reserve: {plan.reserve.explain()}.", style="dim"))
    for d in plan.distorch:
        body = Text()
        body.append(f"DisTorch2 for {d.model.name} (compute on {d.compute_device}):\n", style="bold")
        body.append("  expert_mode_allocations: ")
        body.append(d.expert + "\n", style="cyan")
        if d.simple_equivalent:
            body.append(f"  or the simple inputs: virtual_vram_gb {d.virtual_vram_gb}, donor_device {d.donor_device}\n")
        else:
            body.append("  (two or more donors: only expert_mode_allocations can say this; "
                        f"set virtual_vram_gb {d.virtual_vram_gb} for ComfyUI's memory accounting)\n")
        parts.append(body)
    nodes = _nodes(models, plan)
    if nodes:
        parts.append(Text("Loader nodes:\n" + "\n".join(f"  {n}" for n in nodes)))
        if plan.native is None and not plan.distorch and plan.verdict in ("single", "multi"):
            parts.append(Text("  (ComfyUI 0.24.0 and newer do this with their own nodes: give --comfyui-dir to plan for them.)",
                              style="dim"))
    parts.extend(_native(models, plan))
    parts.append(Text(f"Launch: {plan.launch_command}", style="bold"))
    for warning in plan.warnings:
        parts.append(Text(f"⚠ {warning}", style="yellow"))
    for m in models:
        for note in m.notes:
            parts.append(Text(f"note: {note}", style="dim"))
    for change in changes:
        parts.append(Text(change.describe()))
    for note in notes:
        parts.append(Text(f"note: {note}", style="dim"))
    if written:
        parts.append(Text(f"Wrote {written}", style="bold green"))
    return Group(*parts)


def _native(models: Sequence[ModelInfo], plan: FitPlan) -> list[RenderableType]:
    """ComfyUI's own multi-GPU nodes: which the plan uses, where, and why (not)."""
    native = plan.native
    if native is None:
        return []
    body = Text()
    body.append("ComfyUI's multi-GPU nodes", style="bold")
    body.append(f" ({', '.join(sorted(native.nodes)) or 'none'}):\n")
    for files, change in suggested_nodes(plan, models):
        inputs = ", ".join(f"{k} {v}" for k, v in change.inputs.items())
        body.append(f"  {files}: {change.new_class} ({inputs}) {change.note}\n")
    for note in native.notes:
        body.append(f"  {note}\n", style="dim")
    body.rstrip()
    return [body]


def _nodes(models: Sequence[ModelInfo], plan: FitPlan) -> list[str]:
    """Which ComfyUI-MultiGPU loader to use for each file, in words."""
    out = []
    for files, change in suggested_loaders(plan, models):
        inputs = ", ".join(f"{k} {v}" for k, v in change.inputs.items() if k.endswith("device"))
        out.append(f"{files}: {change.new_class} ({inputs})")
    return out
