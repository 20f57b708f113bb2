"""``comfyrig launch``: check ports, start the plan under the supervisor, show it, stop it."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .. import __version__
from ..comfy.client import ComfyClient, ready_stats
from ..comfy.logs import diagnose
from ..config.settings import Settings
from ..errors import ComfyAPIError, PortInUseError
from .placement import format_cpus
from .plan import InstanceSpec, LaunchPlan
from ..ui.dashboard import dashboard, multigpu_verdict
from ..host.ports import port_is_free, who_holds
from .process import Child
from .registry import InstanceRecord, state_dir_for
from .supervisor import FleetSnapshot, Supervisor, SupervisorOptions, WorkerView

__all__ = ["LaunchOptions", "launch"]


@dataclass(frozen=True)
class LaunchOptions:
    supervisor: SupervisorOptions
    plain: bool = False


def check_ports(plan: LaunchPlan) -> None:
    for inst in plan.instances:
        host = inst.listen.split(",")[0]
        if not port_is_free(inst.port, host):
            holder = who_holds(inst.port)
            who = f"pid {holder.pid} ({holder.command[:120]})" if holder else "another process (not visible to this user)"
            raise PortInUseError(
                f"Port {inst.port} on {host} is already in use by {who}.",
                hint="Stop that process ('comfyrig stop --port N' if comfyrig started it), "
                "choose another port with --port N, or take the next free one with --port auto.",
            )


def _queue(url: str) -> int | None:
    try:
        with ComfyClient(url, timeout_s=1.0) as client:
            return client.queue_remaining()
    except (ComfyAPIError, KeyError, TypeError):
        return None


def launch(plan: LaunchPlan, settings: Settings, console: Console, options: LaunchOptions) -> int:
    check_ports(plan)
    state = state_dir_for(settings)
    plain = options.plain or not console.is_terminal
    log_files = {inst.name: inst.log_file for inst in plan.instances if inst.log_file is not None}
    sessions = {inst.name: state.session_path(f"{inst.port}") for inst in plan.instances}

    def on_change(child: Child, spec: InstanceSpec, what: str) -> None:
        if what == "started":
            state.write(
                InstanceRecord(
                    name=spec.name, port=spec.port, url=spec.url, pid=child.pid, pgid=child.pgid,
                    argv=list(spec.argv), cwd=str(spec.cwd) if spec.cwd else None,
                    cuda_visible_devices=spec.cuda_visible_devices, mode=plan.mode,
                    log_file=str(log_files[spec.name]), supervisor_pid=os.getpid(), started_at=time.time(),
                    cpus=format_cpus(spec.placement.cpus) if spec.placement else None,
                    threads=spec.placement.threads if spec.placement else None,
                )
            )
        else:
            state.remove(spec.port, child.pid)

    def on_ready(view: WorkerView) -> tuple[str, ...] | None:
        device = ""
        if view.stats and view.stats.get("devices"):
            dev = view.stats["devices"][0]
            device = f" on {dev.get('name')} ({int(dev.get('vram_total', 0)) // 2**20} MiB)"
        versions = (view.stats or {}).get("system", {})
        nodes: tuple[str, ...] | None = None
        if not plan.workers and len(plan.selection.gpus) > 1:
            try:
                with ComfyClient(view.url, timeout_s=30.0) as client:
                    nodes = tuple(client.multigpu_nodes())
            except ComfyAPIError:
                nodes = None
        if plain:
            say(f"{view.name}: READY {view.url}{device}; ComfyUI {versions.get('comfyui_version', '?')}, "
                f"PyTorch {versions.get('pytorch_version', '?')}")
            verdict = multigpu_verdict(plan, nodes)
            if verdict is not None:
                say(verdict.plain)
        return nodes

    def say(text: str) -> None:
        console.print(Text(f"comfyrig: {text}"), soft_wrap=True)

    def on_line(name: str, line: str) -> None:
        if plain:
            # print() and not console: a ComfyUI line may hold [brackets] Rich would eat.
            sys.stdout.write(f"[{name}] {line}\n")
            sys.stdout.flush()

    supervisor = Supervisor(
        plan.instances,
        settings.environ,
        options.supervisor,
        probe=ready_stats,
        log_files=log_files,
        sessions=sessions,
        on_line=on_line,
        on_event=say if plain else None,
        on_ready=on_ready,
        on_change=on_change,
        queue_probe=_queue,
    )
    supervisor.install_signal_handlers()
    title = f"comfyrig {__version__} · ComfyUI · {plan.mode} mode · {len(plan.instances)} instance(s)"
    if plain:
        for warning in plan.warnings:
            say(f"warning: {warning}")
        for i in plan.instances:
            placed = f", {i.placement.describe()}" if i.placement else ""
            say(f"{i.name}: {plan.mode} mode, CUDA_VISIBLE_DEVICES={i.cuda_visible_devices!r}{placed}, log {log_files[i.name]}")
        code = supervisor.run()
    else:
        with Live(dashboard(plan, supervisor.snapshot(), title), console=console, refresh_per_second=4, transient=False) as live:
            code = supervisor.run(on_tick=lambda snap: live.update(dashboard(plan, snap, title)))
    _final_report(console, supervisor.snapshot(), plain)
    return code


def _final_report(console: Console, snapshot: FleetSnapshot, plain: bool) -> None:
    for view in snapshot.workers:
        if view.phase == "failed":
            console.print(Text(f"comfyrig: {view.name} {view.message}", style="bold red"), soft_wrap=True)
            if not view.stats:  # it never became ready: show why
                console.print(Text(f"Last {len(view.tail)} log lines of {view.name}:", style="bold"))
                for line in view.tail:
                    console.print(Text(f"  {line}"), soft_wrap=True)
                reason = diagnose(view.tail)
                if reason:
                    console.print(Text(f"comfyrig: likely reason: {reason}", style="bold red"), soft_wrap=True)
            if view.log_file:
                console.print(Text(f"Full log: {view.log_file}", style="dim"))


