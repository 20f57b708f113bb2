"""``comfyrig status`` and ``comfyrig stop``: the instances comfyrig started."""

from __future__ import annotations

import signal
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from ..host.processes import group_alive, pid_alive, signal_group
from ..launch.registry import InstanceRecord, state_dir
from ..ui.console import make_console
from . import options as o
from .app import command
from .report import print_json

__all__: list[str] = []


def _describe(record: InstanceRecord) -> dict[str, Any]:
    # httpx is imported here, not at module level: 'gpus' and 'config' must stay light.
    from ..comfy.client import PROBE_TIMEOUT_S, ComfyClient
    from ..errors import ComfyAPIError

    alive = record.matches_process()
    ready, queue = False, None
    if alive:
        try:
            with ComfyClient(record.url, timeout_s=PROBE_TIMEOUT_S) as client:
                queue = client.queue_remaining()
                ready = True
        except ComfyAPIError:
            pass
    return {
        "name": record.name,
        "port": record.port,
        "pid": record.pid,
        "sentinel_pid": record.sentinel_pid,  # the process that cleans up after it (launch/sentinel.py)
        "gpus": record.cuda_visible_devices,
        "mode": record.mode,
        "url": record.url,
        "running": alive,
        "ready": ready,
        "queue_remaining": queue,
        "log_file": record.log_file,
        "cpus": record.cpus,
        "threads": record.threads,
        "gateway": record.gateway,
    }


def _gateway(url: str) -> dict[str, Any]:
    """What a gateway says of its workers (``/comfyrig/fleet``), or that it does not answer."""
    import httpx

    from ..comfy.client import probe_http_client

    try:
        # The one proxy rule and probe timeout every ComfyUI probe uses (doctor's gateway check too).
        with probe_http_client(url) as http:
            view = http.get(url + "/comfyrig/fleet").raise_for_status().json()
        backends = view["backends"]
        return {"url": url, "answering": True, "routable": sum(1 for b in backends if b["live"]),
                "workers": len(backends), "queue_remaining": view["queue_remaining"], "clients": view["clients"],
                "prompts_routed": view["counters"]["prompts"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        # 401 from a gateway with a token (status does not send it), or not up yet
        return {"url": url, "answering": False}


def _ray_gateways(state: Any, environ: Any) -> list[dict[str, Any]]:
    """The Ray workers behind each gateway that 'launch --workers --ray' runs here: each with
    its node and current URL, from the gateway's fleet view."""
    from ..launch.ray_record import fleet_workers, ray_records

    found = []
    for record in ray_records(state):
        workers = fleet_workers(record, state, environ)
        found.append({"url": record.url, "port": record.port, "pid": record.pid, "ray": record.ray,
                      "answering": workers is not None, "workers": workers or []})
    return found


@command("status", help="List the ComfyUI instances comfyrig started: port, pid, GPUs, ready, queue.")
def status_cmd(json_out: o.JsonOut = False) -> int:
    settings = o.settings_from(o.overrides())
    state = state_dir(settings.environ)
    rows = []
    for record in state.records():
        info = _describe(record)
        info["started_by"] = record.owner
        if not info["running"] and not group_alive(record.pgid):
            state.remove(record.port, record.pid)  # a stale record of a dead instance
            continue
        rows.append(info)
    gateways = [_gateway(url) for url in dict.fromkeys(r["gateway"] for r in rows if r["gateway"])]
    rays = _ray_gateways(state, settings.environ)
    if json_out:
        print_json({"instances": rows, "gateways": gateways, "ray": rays})
        return 0
    console = make_console(settings.environ)
    for ray in rays:
        _print_ray(console, ray)
    if not rows and not rays:
        console.print("No ComfyUI started by comfyrig is running.")
        return 0
    table = Table(title="ComfyUI instances started by comfyrig")
    for column in ("port", "pid", "GPUs", "CPUs/threads", "mode", "by", "url", "ready", "queue", "log"):
        table.add_column(column)
    for r in rows:
        placed = f"{r['cpus']} / {r['threads']}" if r["cpus"] else "-"
        table.add_row(str(r["port"]), str(r["pid"]), r["gpus"] or "cpu", placed, r["mode"], r["started_by"], r["url"],
                      "yes" if r["ready"] else "no", "" if r["queue_remaining"] is None else str(r["queue_remaining"]),
                      r["log_file"] or "")
    if not rows:
        return 0
    console.print(table)
    for g in gateways:
        if g["answering"]:
            console.print(f"Gateway {g['url']}: {g['routable']}/{g['workers']} workers routable, queue {g['queue_remaining']}, "
                          f"{g['clients']} websocket client(s), {g['prompts_routed']} prompt(s) routed.")
        else:
            console.print(f"Gateway {g['url']}: not answering its fleet view (starting, or it asks for a token).")
    return 0


def _print_ray(console: Any, ray: dict[str, Any]) -> None:
    if not ray["answering"]:
        console.print(f"Gateway {ray['url']} (Ray cluster {ray['ray']}, pid {ray['pid']}): not answering its fleet view.")
        return
    table = Table(title=f"Workers on the Ray cluster {ray['ray']} behind {ray['url']}")
    for column in ("worker", "node", "url", "routable", "in flight", "completed", "failed"):
        table.add_column(column)
    for w in ray["workers"]:
        table.add_row(w["name"], w["node"] or "-", w["url"], "yes" if w["live"] else "no", str(w["in_flight"]),
                      str(w["completed"]), str(w["failed"]))
    console.print(table)


# What the Ray launch needs after its SIGINT: each worker's ComfyUI stops on its node (its
# actor waits up to 20 s for that), then the gateway. Only then SIGKILL, after which Ray ends
# the launch's actors itself and each worker's sentinel kills its ComfyUI.
RAY_STOP_GRACE_S = 30.0


def _stop_ray(record: Any, timeout: float, console: Any) -> None:
    """Stop a 'launch --workers --ray': its process stops every worker on the cluster, then the
    gateway, as on Ctrl-C; SIGKILL after ``timeout`` plus the time the workers may take."""
    import contextlib
    import os

    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile (its own Ctrl-C)
        os.kill(record.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout + RAY_STOP_GRACE_S
    while record.matches_process() and time.monotonic() < deadline:
        time.sleep(0.1)
    forced = record.matches_process()
    if forced:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
    console.print(f"port {record.port}: stopped the gateway of the Ray cluster {record.ray} (pid {record.pid}) and "
                  f"its workers{' (SIGKILL after the grace period: Ray ends the workers)' if forced else ''}.")


@command("stop", help="Stop ComfyUI instances comfyrig started (whole process group, SIGINT then SIGKILL); "
         "their supervisor does not restart them, whatever its --restart policy.")
def stop_cmd(
    port: Annotated[int | None, typer.Option("--port", callback=o.bounded("--port", o.PORT), help="The instance on this port (a gateway's port: every worker behind it).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every instance comfyrig started.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", callback=o.bounded("--timeout", o.SECONDS), help="Seconds between SIGINT and SIGKILL.")] = 10.0,
) -> int:
    if (port is None) == (not all_):
        raise ConfigError("Say which instances to stop: --port N or --all.")
    settings = o.settings_from(o.overrides())
    state = state_dir(settings.environ)
    console = make_console(settings.environ)
    # A gateway's port stops every worker behind it (the launch that serves it then ends).
    records = [r for r in state.records() if all_ or r.port == port or
               (r.gateway is not None and r.gateway.rsplit(":", 1)[-1] == str(port))]
    from ..launch.ray_record import ray_records

    rays = [r for r in ray_records(state) if all_ or r.port == port]
    for ray in rays:
        _stop_ray(ray, timeout, console)
    if not records and rays:
        return 0
    if not records:
        console.print(f"No comfyrig-started ComfyUI {'is running' if all_ else f'on port {port}'}.")
        return 0 if all_ else 1
    for record in records:
        if not record.matches_process():
            # The pid is gone or now runs something else: never signal it (nor a group of that number).
            state.remove(record.port, record.pid)
            console.print(f"port {record.port}: pid {record.pid} no longer runs that ComfyUI; record removed.")
            continue
        # First the marker, so that the supervisor, seeing its ComfyUI end, does not restart it.
        state.request_stop(record.port, record.pid)
        signal_group(record.pgid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while group_alive(record.pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        forced = group_alive(record.pgid)
        if forced:
            signal_group(record.pgid, signal.SIGKILL)
        supervised = pid_alive(record.supervisor_pid) and record.supervisor_pid != record.pid
        if supervised:
            # Its supervisor reads the marker when it sees the exit, then removes record and marker.
            deadline = time.monotonic() + 5.0
            while state.holds(record.port, record.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        state.remove(record.port, record.pid)  # nothing left to do it (or it did already)
        console.print(
            f"port {record.port}: stopped pid {record.pid}{' (SIGKILL after the grace period)' if forced else ''}"
            + (f"; its supervisor (pid {record.supervisor_pid}) will not restart it." if supervised else ".")
        )
    return 0
