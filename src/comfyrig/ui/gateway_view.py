"""The gateway as a person sees it: one sentence per event, one panel in the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.panel import Panel
from rich.text import Text

from ..gateway.events import BackendDown, BackendUp, GatewayEvent, GatewayStarted, NodesDiffer, PromptFailed, PromptMoved
from ..launch.plan import GatewayPlan

__all__ = ["describe_gateway", "fleet_counts", "gateway_line", "gateway_panel"]


def describe_gateway(event: GatewayEvent) -> str:
    match event:
        case GatewayStarted(url=url, backends=backends, auth=auth):
            guard = "; a token is required (see 'comfyrig gateway --help')" if auth else ""
            return f"gateway: one ComfyUI URL {url} in front of {len(backends)} worker(s){guard}"
        case BackendUp(name=name, url=url):
            return f"gateway: {name} ({url}) is routable"
        case BackendDown(name=name, in_flight=count):
            moved = f"; its {count} prompt(s) go to another worker if it does not come back" if count else ""
            return f"gateway: lost {name}{moved}"
        case NodesDiffer(name=name, reference=reference, diff=diff):
            return (f"gateway: warning: {name} {diff.describe(reference)} (compared with {reference}). A prompt using "
                    "them fails when routed there: install the same custom nodes and models on every worker.")
        case PromptMoved(prompt_id=pid, source=source, target=target):
            return f"gateway: prompt {pid} re-submitted from {source} to {target}"
        case PromptFailed(prompt_id=pid, reason=reason):
            return f"gateway: prompt {pid} failed: {reason}"


def gateway_line(plan: GatewayPlan) -> Text:
    text = Text("One URL for every GPU: ", style="bold")
    text.append(plan.url, style="bold green")
    if plan.urls:
        text.append(f"  (+ {len(plan.urls)} server(s) given with --url)")
    if plan.auth:
        text.append("  token required", style="yellow")
    return text


def gateway_panel(plan: GatewayPlan, view: dict[str, Any] | None) -> Panel:
    text = gateway_line(plan)
    if view is not None:
        text.append("\n")
        text.append(fleet_counts(view))
    return Panel(text, title="Gateway", box=box.ROUNDED, border_style="green")


def fleet_counts(view: Mapping[str, Any]) -> Text:
    """One line from the gateway's fleet view: workers routable, queue, clients, prompts routed
    and re-submitted (the launch dashboard's panel and the Ray workers' table)."""
    live = sum(1 for b in view["backends"] if b["live"])
    text = Text(f"{live}/{len(view['backends'])} workers routable · queue {view['queue_remaining']} · "
                f"{view['clients']} client(s) · {view['counters']['prompts']} prompt(s) routed", style="dim")
    if view["counters"]["prompts_moved"]:
        text.append(f" · {view['counters']['prompts_moved']} re-submitted after a worker was lost", style="yellow")
    return text
