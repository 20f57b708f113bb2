"""How ``launch`` looks: the plan, the plain event lines, and the exit report.

The live dashboard itself is ``ui/dashboard.py``; this module renders what
is printed once (the plan, the report) and the line-per-event view used in
pipes and with ``--plain``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..comfy.logs import diagnose
from ..launch.events import FleetSnapshot, Inspected, LogLine, Ready, SupervisorEvent, describe
from ..launch.plan import LaunchPlan
from ..secrets import mask_argv, mask_env
from .dashboard import multigpu_verdict
from .panel import gpu_config_panel

__all__ = ["PlainLaunchView", "exit_report", "render_plan"]


def render_plan(plan: LaunchPlan) -> Group:
    """What would run, exactly: the panel, each instance's argv, environment and placement."""
    table = Table(title="Launch plan", show_lines=True, expand=True)
    table.add_column("instance", style="cyan", no_wrap=True)
    table.add_column("what runs")
    for inst in plan.instances:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in mask_env(inst.env).items())
        body = Text()
        body.append(f"{inst.url}   CUDA_VISIBLE_DEVICES={inst.cuda_visible_devices or '(empty)'}\n", style="bold")
        body.append(f"cwd: {inst.cwd or '<ComfyUI directory>'}\n", style="dim")
        body.append(f"argv: {shlex.join(mask_argv(inst.argv))}\n")
        body.append(f"env: {env}", style="dim")
        if inst.placement is not None:
            body.append(f"\nplacement: {inst.placement.describe()}", style="magenta")
        table.add_row(inst.name, body)
    parts: list[RenderableType] = [gpu_config_panel(plan.selection, workers=plan.workers, checkout=plan.checkout), table]
    if plan.gateway is not None:
        from .gateway_view import gateway_line

        parts.insert(1, gateway_line(plan.gateway))
    for warning in plan.warnings:
        if warning not in plan.selection.notes:  # those the panel already shows
            parts.append(Text(f"⚠ {warning}", style="bold yellow"))
    return Group(*parts)


class PlainLaunchView:
    """A reporter for pipes and ``--plain``: one ``comfyrig:`` line per event, ComfyUI's
    own lines as ``[name] line`` (written raw: a line may hold [brackets] Rich would eat)."""

    def __init__(self, plan: LaunchPlan, console: Console, out: TextIO | None = None) -> None:
        self.plan = plan
        self.console = console
        self._out: Callable[[], TextIO] = (lambda: out) if out is not None else (lambda: sys.stdout)

    def say(self, text: str) -> None:
        self.console.print(Text(f"comfyrig: {text}"), soft_wrap=True)

    def preamble(self) -> None:
        for warning in self.plan.warnings:
            self.say(f"warning: {warning}")
        if self.plan.gateway is not None:
            self.say(f"gateway: {self.plan.gateway.url} (workers on loopback behind it)")
        for inst in self.plan.instances:
            placed = f", {inst.placement.describe()}" if inst.placement else ""
            self.say(f"{inst.name}: {self.plan.mode} mode, CUDA_VISIBLE_DEVICES={inst.cuda_visible_devices!r}{placed}, "
                     f"log {inst.log_file}")

    def __call__(self, event: SupervisorEvent) -> None:
        match event:
            case LogLine(name=name, text=text):
                out = self._out()
                out.write(f"[{name}] {text}\n")
                out.flush()
                return
            case Ready(name=name, url=url, stats=stats):
                self.say(f"{name}: ready at {url} after {event.seconds:.1f} s")
                device = ""
                devices = stats.get("devices") or []
                if devices:
                    dev = devices[0]
                    device = f" on {dev.get('name')} ({int(dev.get('vram_total', 0)) // 2**20} MiB)"
                versions = stats.get("system") or {}
                self.say(f"{name}: READY {url}{device}; ComfyUI {versions.get('comfyui_version', '?')}, "
                         f"PyTorch {versions.get('pytorch_version', '?')}")
            case Inspected(finding=finding):
                verdict = multigpu_verdict(self.plan, finding)
                if verdict is not None:
                    for line in verdict.plain.splitlines():
                        self.say(line)
            case _:
                sentence = describe(event)
                if sentence is not None:
                    self.say(sentence)


def exit_report(snapshot: FleetSnapshot, plan: LaunchPlan | None = None) -> list[RenderableType]:
    """For every instance that ended in failure: why, its last lines if it never became
    ready, the likely reason, and where the whole log is. With ``plan``, an out-of-memory
    reason gets the advice for this ComfyUI's version and flags (``LaunchPlan.oom_advice``)."""
    parts: list[RenderableType] = []
    for view in snapshot.workers:
        if view.phase != "failed":
            continue
        parts.append(Text(f"comfyrig: {view.name} {view.message}", style="bold red"))
        if not view.ever_ready:
            parts.append(Text(f"Last {len(view.tail)} log lines of {view.name}:", style="bold"))
            # ComfyUI 0.24 colours its lines even into a pipe: render the codes, never print them raw.
            parts.extend(Text.assemble("  ", Text.from_ansi(line)) for line in view.tail)
            reason = diagnose(view.tail)
            if reason:
                parts.append(Text(f"comfyrig: likely reason: {reason}", style="bold red"))
                if reason.startswith("CUDA out of memory") and plan is not None:
                    # The flags give the default; the log says whether dynamic VRAM really ran.
                    off = view.info.system.get("dynamic_vram", "").startswith("disabled")
                    advice = plan.oom_advice_without_dynamic if off else plan.oom_advice
                    if advice:
                        parts.append(Text(f"comfyrig: {advice}"))
        if view.log_file:
            parts.append(Text(f"Full log: {view.log_file}", style="dim"))
    return parts
