"""The launch dashboard: pure functions from a FleetSnapshot to Rich renderables."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..comfy.logs import NodeImport
from ..comfy.multigpu import MultiGpuFinding, judge
from ..launch.events import FleetSnapshot, WorkerView
from ..launch.plan import LaunchPlan
from .panel import gpu_config_panel

__all__ = ["dashboard", "multigpu_verdict", "status_line"]

_PHASE_STYLE = {
    "starting": "yellow",
    "ready": "bold green",
    "stopping": "magenta",
    "backoff": "yellow",
    "exited": "dim",
    "failed": "bold red",
}
# What ComfyUI's log said (comfy/logs.py's StartupInfo.system keys), in the order a person reads it.
_SYSTEM_ROWS = (
    ("python", "Python"),
    ("pytorch", "PyTorch"),
    ("comfyui", "ComfyUI"),
    ("frontend", "Frontend"),
    ("device", "Device"),
    ("memory", "Memory"),
    ("vram_state", "VRAM state"),
    ("dynamic_vram", "Dynamic VRAM"),
    ("attention", "Attention"),
    ("cache", "Node cache"),
    ("comfy_kitchen", "comfy-kitchen"),
    ("comfy_aimdo", "comfy-aimdo"),
)
_LEVEL_STYLE = {"CRITICAL": "bold red", "ERROR": "red", "WARNING": "yellow"}


_VERDICT_STYLE = {"ok": ("✓ ", "green"), "warn": ("⚠ ", "bold yellow"), "info": ("  ", "")}


def multigpu_verdict(plan: LaunchPlan, finding: MultiGpuFinding | None) -> Text | None:
    """In dual/multi mode, what will use the GPUs after the first (``comfy.multigpu.judge``):
    one line per sentence, marked ✓ or ⚠. None in other modes or before ComfyUI answered."""
    if plan.workers or len(plan.selection.gpus) < 2 or finding is None:
        return None
    text = Text()
    for n, line in enumerate(judge(finding, plan.selection.gpus).lines):
        mark, style = _VERDICT_STYLE[line.level]
        text.append(("\n" if n else "") + mark + line.text, style=style)
    return text


def status_line(view: WorkerView, *, compact: bool = False) -> Text:
    style = _PHASE_STYLE[view.phase]
    text = Text()
    text.append(f"{view.phase.upper():9}", style=style)
    if compact and view.phase in ("ready", "starting"):
        if view.phase == "starting":
            text.append(f" {view.elapsed_s:4.0f} s", style="dim")
        return text
    if view.phase == "starting":
        text.append(f" {view.elapsed_s:5.1f} s  ", style="dim")
        text.append(view.info.last_line[-90:] or view.message, style="dim")
    elif view.phase == "ready":
        text.append(f" {view.url}", style="bold")
        if view.queue_remaining is not None:
            text.append(f"   queue: {view.queue_remaining}", style="cyan")
    else:
        text.append(f" {view.message}")
    return text


def _system_table(view: WorkerView) -> Table:
    table = Table(title="System", show_header=False, box=box.SIMPLE, expand=False)
    table.add_column(style="cyan")
    table.add_column()
    system = view.info.system
    for key, label in _SYSTEM_ROWS:
        if key not in system:
            continue
        value = system[key]
        if key == "comfy_kitchen" and "kitchen_backends" in system:
            value += f" (backends: {system['kitchen_backends']})"
        table.add_row(label, value)
        if key == "device" and len(view.info.devices) > 1:
            table.add_row("Other devices", ", ".join(view.info.devices[1:]))
    if view.stats:
        for device in view.stats.get("devices", [])[:1]:
            table.add_row("Serving on", f"{device.get('name')} ({int(device.get('vram_total', 0)) // 2**20} MiB)")
    return table


def _imports(view: WorkerView) -> RenderableType | None:
    imports, builtins = view.info.imports, view.info.builtin_failures
    if not imports and not builtins:
        return None
    failed = [node for node in imports if node.failed]
    text = Text(f"Custom nodes: {len(imports) - len(failed)} imported", style="cyan")
    if failed:
        text.append(f", {len(failed)} failed", style="bold red")
    for node in imports:
        if node.failed:
            text.append(f"\n  IMPORT FAILED {node.path}" + (f": {node.error}"[:160] if node.error else ""), style="bold red")
        elif node.seconds >= 1.0:
            text.append(f"\n  {node.seconds:.1f} s {node.path}", style="yellow")
    if builtins:
        text.append("\nBuilt-in nodes that did not load: " + "; ".join(_grouped(builtins)), style="yellow")
    return text


def _grouped(nodes: tuple[NodeImport, ...]) -> list[str]:
    """'a.py, b.py (No module named 'torchaudio')': one entry per reason."""
    reasons: dict[str | None, list[str]] = {}
    for node in nodes:
        reasons.setdefault(node.error, []).append(node.path)
    return [", ".join(paths) + (f" ({why})" if why else "") for why, paths in reasons.items()]


def _problems(view: WorkerView) -> RenderableType | None:
    problems = view.info.problems
    if not problems:
        return None
    body = Text()
    for i, problem in enumerate(problems[-6:]):
        body.append(("\n" if i else "") + problem.text[:140], style=_LEVEL_STYLE.get(problem.level, "yellow"))
    errors = any(p.level in ("ERROR", "CRITICAL") for p in problems[-6:])
    return Panel(body, title="⚠ Warnings and errors", border_style="red" if errors else "yellow", box=box.ROUNDED)


def _fleet_table(snapshot: FleetSnapshot) -> Table:
    table = Table(title="Workers", expand=True)
    for column in ("worker", "GPU", "CPUs/threads", "url", "state", "queue", "log"):
        table.add_column(column, overflow="fold")
    for view in snapshot.workers:
        table.add_row(
            view.name,
            view.cuda_visible_devices or "cpu",
            view.placement or "-",
            view.url,
            status_line(view, compact=True),
            "" if view.queue_remaining is None else str(view.queue_remaining),
            view.log_file or "",
        )
    return table


def dashboard(plan: LaunchPlan, snapshot: FleetSnapshot, title: str, gateway: dict[str, Any] | None = None) -> RenderableType:
    """``gateway``: the gateway's fleet view (``GatewayServer.fleet_view``), when one runs."""
    header = Text(title, style="bold cyan", justify="center")
    parts: list[RenderableType] = [Panel(header, box=box.DOUBLE, border_style="cyan"), gpu_config_panel(plan.selection, workers=plan.workers, checkout=plan.checkout)]
    if plan.gateway is not None:
        from .gateway_view import gateway_panel

        parts.append(gateway_panel(plan.gateway, gateway))
    if len(snapshot.workers) == 1:
        view = snapshot.workers[0]
        if view.info.system or view.stats:
            parts.append(_system_table(view))
        for extra in (_imports(view), _problems(view), multigpu_verdict(plan, view.multigpu)):
            if extra is not None:
                parts.append(extra)
        parts.append(Panel(status_line(view), title="Status", box=box.HEAVY, border_style=_PHASE_STYLE[view.phase].split()[-1]))
        if view.log_file:
            parts.append(Text(f"log: {view.log_file}", style="dim"))
    else:
        parts.append(_fleet_table(snapshot))
    for warning in plan.warnings:
        parts.append(Text(f"⚠ {warning}", style="yellow"))
    return Group(*parts)
