"""Workers on a Ray cluster as a person sees them: one sentence per event, a table for a dry run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..comfy.urls import is_local_host
from ..launch.ray_fleet import (
    ClusterJoined,
    NodeJoined,
    NodeLeft,
    PlannedWorker,
    RayFleetEvent,
    WatchTrouble,
    WorkerFailed,
    WorkerLost,
    WorkerRouted,
    WorkersStopping,
    WorkerTrouble,
)
from ..launch.ray_worker import WorkerPlace
from .gateway_view import fleet_counts

__all__ = ["describe_ray", "ray_dashboard", "ray_plan_table"]


def _where(place: WorkerPlace) -> str:
    return f"{place.hostname} ({place.host}, node {place.node_id[:12]}) GPU {place.gpu}"


def describe_ray(event: RayFleetEvent) -> str:
    match event:
        case ClusterJoined(address=address, nodes=nodes, workers=workers):
            gpus = sum(n.gpus for n in nodes)
            return (f"ray: joined the cluster at {address}: {len(nodes)} node(s) with {gpus} GPU(s); "
                    f"starting {workers} worker(s), each routed once its ComfyUI is ready")
        case WorkerRouted(name=name, place=place, restarted=restarted):
            again = " again (its actor restarted)" if restarted else ""
            host = urlsplit(place.url).hostname or ""
            exposed = "" if is_local_host(host) else (
                f"; ComfyUI has no authentication and listens on {host}, which anyone who reaches that node can use:"
                " allow its port only from this machine (docs/gateway.md, 'what listens where')")
            return f"ray: {name} on {_where(place)} at {place.url} is behind the gateway{again}{exposed}"
        case WorkerLost(name=name, place=place, reason=reason):
            return (f"ray: {name} on {_where(place)} is off the gateway: {reason}; its prompts go to other "
                    "workers, and Ray restarts it where a GPU is free")
        case WorkerFailed(worker=worker, reason=reason):
            return f"ray: {worker} could not start ComfyUI: {reason}"
        case WorkerTrouble(name=name, place=place, message=message, restarts=restarts, gave_up=gave_up, log=log):
            then = ("its supervisor gave up (its --restart policy, or a failure a restart cannot mend)" if gave_up
                    else f"restarting it (restart {restarts + 1})")
            where = f"; its log on that node: {log}" if log else ""
            return f"ray: {name} on {_where(place)}: ComfyUI ended: {message}; {then}{where}"
        case NodeJoined(node=node, new_workers=new):
            what = f"{new} new worker(s) start there" if new else "workers waiting for a GPU restart there"
            return f"ray: node {node.hostname} ({node.host}, {node.node_id[:12]}) joined with {node.gpus} GPU(s): {what}"
        case NodeLeft(node=node):
            return f"ray: node {node.hostname} ({node.host}, {node.node_id[:12]}) left the cluster"
        case WorkersStopping(workers=count):
            return f"ray: stopping {count} worker(s) and their ComfyUI"
        case WatchTrouble(reason=reason):
            return f"ray: could not look at the cluster ({reason}); trying again"


def ray_plan_table(rows: Sequence[PlannedWorker], address: str) -> Table:
    table = Table(title=f"Workers on the Ray cluster at {address} (one per GPU; nothing started)")
    for column in ("worker", "node", "host", "node id", "ComfyUI listens on"):
        table.add_column(column)
    for row in rows:
        listen = "127.0.0.1 (this machine)" if row.listen == "127.0.0.1" else f"{row.listen} (the node's cluster address)"
        table.add_row(row.worker, row.node.hostname, row.node.host, row.node.node_id[:12], listen)
    return table


_STATE_STYLE = {"routed": "green", "starting": "cyan", "waiting": "yellow", "failing": "red", "failed": "bold red"}
_STATE_WORDS = {"routed": "routed", "starting": "starting", "waiting": "waiting for a GPU",
                "failing": "lost", "failed": "failed"}


def ray_dashboard(address: str, url: str, workers: Sequence[Mapping[str, Any]],
                  view: Mapping[str, Any] | None) -> RenderableType:
    """The live view of ``--workers --ray``: the gateway's line, then one row per worker with its
    node, state, URL and what it has done (``workers``: ``RayFleet.workers()``; ``view``: the
    gateway's fleet view, None when it did not answer in time)."""
    backends = {b["name"]: b for b in (view or {}).get("backends", [])}
    nodes = {w["node_id"] for w in workers if w["node_id"]}
    head = Text(f"One ComfyUI URL: {url}", style="bold")
    head.append(f"  ·  Ray cluster {address}  ·  {len(nodes)} node(s), {len(workers)} worker(s)", style="dim")
    if view is not None:
        head.append("\n")
        head.append(fleet_counts(view))
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    for column, right in (("worker", False), ("node", False), ("state", False), ("URL", False), ("in flight", True),
                          ("done", True), ("failed", True)):
        table.add_column(column, justify="right" if right else "left", no_wrap=column in ("URL", "worker"))
    for w in workers:
        backend = backends.get(w["backend"] or "") or {}
        node = f"{w['hostname']} {w['host']} {w['node_id'][:12]}" if w["node_id"] else "-"
        state = Text(_STATE_WORDS.get(w["state"], w["state"]), style=_STATE_STYLE.get(w["state"], ""))
        table.add_row(w["backend"] or w["worker"], node, state, w["url"] or "-", str(backend.get("in_flight", "")),
                      str(backend.get("completed", "")), str(backend.get("failed", "")))
    return Panel(Group(head, table), title="comfyrig · workers on Ray", box=box.ROUNDED, border_style="green")
