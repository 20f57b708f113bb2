"""``comfyrig monitor``: GPUs, their processes and the ComfyUI instances, live.

Output modes: the Rich live view (default), ``--json`` (one object with
``--once``, else one line per tick), ``--dmon`` (nvidia-smi dmon's scrolling
lines); ``--csv FILE`` records alongside any of them. ``--plot FILE.csv``
turns a recording into a PNG instead of monitoring.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from ..comfy.client import PROBE_TIMEOUT_S, ComfyClient
from ..comfy.urls import local_url
from ..config.settings import DEFAULT_PORT, Settings
from ..errors import ComfyAPIError, ConfigError
from ..files import check_output_file
from ..monitor.collect import MIN_INTERVAL_S, Monitor, run_ticks
from ..monitor.csvlog import CsvLog
from ..monitor.history import History
from ..monitor.host import MIN_WINDOW_S, HostSampler
from ..monitor.instances import Discover, InstancePoller, normalise_url
from ..monitor.sampler import open_sampler
from ..monitor.snapshot import Snapshot
from ..ui.console import make_console
from ..ui.monitor_view import dmon_header, dmon_line, monitor_view
from . import options as o
from .app import command

__all__: list[str] = []


@dataclass
class Watched:
    """What the monitor polls: fixed URLs (with what each is), and the workers behind Ray
    gateways, asked again each tick (Ray restarts a worker elsewhere, under a new URL)."""

    urls: list[str]
    notes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    discover: Discover | None = None


def _watched(settings: Settings, urls: list[str] | None) -> Watched:
    """The URLs to poll: those given; else every gateway and ComfyUI comfyrig started that still
    runs (launch, a batch fleet, the workers of a Ray cluster behind a gateway here); else the
    configured port, if it answers."""
    if urls:
        return Watched([normalise_url(u) for u in urls])
    if settings.port.source != "cli":
        from ..launch.ray_record import ray_records
        from ..launch.registry import state_dir

        state = state_dir(settings.environ)
        records = [r for r in state.records() if r.matches_process()]
        rays = ray_records(state)
        # A gateway first: its queue is the fleet's (GET /prompt sums every worker's).
        gateways = [*dict.fromkeys(r.gateway for r in records if r.gateway)]
        recorded = [*gateways, *(r.url for r in rays), *(r.url for r in records)]
        if recorded:
            notes = tuple(f"{g} is the gateway: its queue counts every worker behind it." for g in gateways)
            notes += tuple(f"{r.url} is the gateway of the Ray cluster {r.ray}: its queue counts every worker "
                           "behind it, listed with its node." for r in rays)
            labels = dict.fromkeys(gateways, "gateway") | {r.url: f"gateway (Ray {r.ray})" for r in rays}
            return Watched(recorded, notes, labels, _ray_workers(state, rays, settings.environ) if rays else None)
    port = settings.port.value if isinstance(settings.port.value, int) else DEFAULT_PORT
    url = local_url(str(settings.listen.value), port)
    with ComfyClient(url, timeout_s=PROBE_TIMEOUT_S) as client:
        try:
            client.prompt_counts()
        except ComfyAPIError:
            return Watched([], (f"No ComfyUI answers at {url}; watch instances with --url URL (repeatable).",))
    return Watched([url])


def _ray_workers(state: Any, rays: list[Any], environ: Any) -> Discover:
    """Each tick: the workers behind the Ray gateways, URL -> "worker on node"."""
    from ..launch.ray_record import fleet_workers

    def discover() -> dict[str, str] | None:
        found: dict[str, str] = {}
        for record in rays:
            workers = fleet_workers(record, state, environ)
            if workers is None:
                return None  # the gateway busy or gone: the last list stays
            found |= {w["url"]: f"{w['name']} on {w['node']}" for w in workers}
        return found

    return discover


def _check_flags(interval: float, json_out: bool, dmon: bool, plot: Path | None, others: dict[str, bool]) -> None:
    if interval < MIN_INTERVAL_S:
        raise ConfigError(f"--interval {interval:g}: the shortest interval is {MIN_INTERVAL_S} s.")
    if json_out and dmon:
        raise ConfigError("Choose one output format: --json or --dmon, not both.")
    if plot is not None:
        given = [name for name, on in {"--json": json_out, "--dmon": dmon, **others}.items() if on]
        if given:
            raise ConfigError(f"--plot turns a recorded CSV into a PNG; it does not take {', '.join(given)}.")


def _plot(plot: Path, out: Path | None, console: Console) -> int:
    from ..monitor.plot import plot_csv

    target = check_output_file(out or plot.with_suffix(".png"), "--out")
    count = plot_csv(plot, target)
    console.print(f"Wrote {target} ({count} GPU{'s' if count != 1 else ''}).")
    return 0


@command("monitor", help="Watch the GPUs, their processes and the ComfyUI instances, live (Ctrl-C stops).")
def monitor_cmd(
    interval: Annotated[float, typer.Option("--interval", "-i", metavar="SECONDS", callback=o.bounded("--interval", o.Bounds(minimum=MIN_INTERVAL_S, maximum=86_400, unit="seconds")), help=f"Seconds between refreshes (at least {MIN_INTERVAL_S}).")] = 1.0,
    url: Annotated[list[str] | None, typer.Option("--url", metavar="URL", help="A ComfyUI to watch (repeatable); default: every ComfyUI comfyrig started, else the configured port if it answers.", show_default=False)] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    count: Annotated[int | None, typer.Option("--count", "-c", callback=o.bounded("--count", o.COUNT), metavar="N", help="Stop after this many refreshes.", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON: one object with --once, else one line per refresh.")] = False,
    dmon: Annotated[bool, typer.Option("--dmon", help="nvidia-smi dmon's compact scrolling lines, one per GPU.")] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Also append one row per GPU per refresh to FILE.", show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE.csv", help="Turn a recorded CSV into a PNG and exit (needs: pip install 'comfyrig\\[plot]').", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE.png", help="Where --plot writes (default: the CSV's name with .png).", show_default=False)] = None,
    port: o.Port = None,
    env_file: o.EnvFile = None,
) -> int:
    _check_flags(interval, json_out, dmon, plot, {"--once": once, "--csv": csv_path is not None, "--url": bool(url)})
    settings = o.settings_from(o.overrides(port=port, env_file=env_file))
    console = make_console(settings.environ)
    if plot is not None:
        return _plot(plot, out, console)

    watched = _watched(settings, url)
    sampler = open_sampler(settings.fake_gpus)
    host = HostSampler()
    if once:
        # One figure only: let it describe the machine over a short idle wait, not comfyrig starting up.
        time.sleep(MIN_WINDOW_S)
    poller = (InstancePoller(watched.urls, labels=watched.labels, discover=watched.discover)
              if watched.urls else None)
    monitor = Monitor(sampler, host=host, poller=poller, notes=watched.notes)
    csv_log = CsvLog(csv_path) if csv_path is not None else None
    ticks = 1 if once else count
    history = History(interval=interval)

    def record(snapshot: Snapshot) -> None:
        if csv_log is not None:
            csv_log.write(snapshot)

    try:
        if json_out:
            indent = 2 if once else None
            run_ticks(monitor, interval, _each(record, lambda s: _write_json(s, indent)), ticks=ticks)
        elif dmon:
            if sampler.problem:
                sys.stderr.write(f"comfyrig monitor: no GPU to show: {sampler.problem}\n")
            sys.stdout.write("\n".join(dmon_header()) + "\n")
            run_ticks(monitor, interval, _each(record, _write_dmon), ticks=ticks)
        elif once:
            snapshot = monitor.snapshot()
            record(snapshot)
            console.print(monitor_view(snapshot))
        else:
            with Live(console=console, auto_refresh=False) as live:

                def show(snapshot: Snapshot) -> None:
                    history.record(snapshot)
                    live.update(monitor_view(snapshot, history.trends()), refresh=True)

                run_ticks(monitor, interval, _each(record, show), ticks=ticks)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a monitor is meant to stop
    finally:
        monitor.close()
        if csv_log is not None:
            csv_log.close()
    return 0


def _each(*actions: Callable[[Snapshot], None]) -> Callable[[Snapshot], None]:
    def run(snapshot: Snapshot) -> None:
        for action in actions:
            action(snapshot)

    return run


def _write_json(snapshot: Snapshot, indent: int | None) -> None:
    sys.stdout.write(json.dumps(snapshot.to_json(), indent=indent) + "\n")
    sys.stdout.flush()


def _write_dmon(snapshot: Snapshot) -> None:
    sys.stdout.write("".join(dmon_line(snapshot, gpu) + "\n" for gpu in snapshot.gpus))
    sys.stdout.flush()
