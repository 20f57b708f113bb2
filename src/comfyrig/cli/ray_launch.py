"""``launch --workers --ray ADDRESS``: the edge of the Ray fleet (ray_fleet.py) and its gateway.

Parsing is launch_cmd's; here the settings become the fleet's options, the
gateway binds first (a taken port is an error before any actor starts), the
fleet's and the gateway's events are printed one line each (under a live table
of the workers in a terminal), a record in the state folder tells status,
monitor and stop where it is, and Ctrl-C or 'comfyrig stop --port' (a signal
handler that only enqueues) stops the actors, then the gateway.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from ..errors import ConfigError
from ..launch.plan import is_loopback
from .report import print_json

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..gateway.events import GatewayEvent
    from ..launch.ray_fleet import RayFleetEvent
    from ..launch.supervisor import SupervisorOptions

__all__ = ["run_ray_workers"]

DEFAULT_GATEWAY_PORT = 8188


def run_ray_workers(settings: Settings, address: str, console: Console, *, dry_run: bool, json_out: bool,
                    auth: bool, insecure_no_auth: bool, urls: tuple[str, ...], max_workers: int | None,
                    supervisor: SupervisorOptions, log_dir: Path | None = None, plain: bool = False) -> int:
    """Raises ConfigError (no Ray, a bad flag) and LaunchError (cluster unreachable, no GPUs)."""
    from ..gateway.service import backend_specs
    from ..launch.ray_fleet import RayFleet, RayFleetOptions, plan_workers
    from ..launch.ray_worker import node_python, require_ray

    listen = str(settings.listen.value)
    port = DEFAULT_GATEWAY_PORT if settings.port.value == "auto" else int(settings.port.value)
    if not is_loopback(listen) and not auth and not insecure_no_auth:
        raise ConfigError(
            f"The gateway would listen on {listen}, and ComfyUI has no authentication of its own: anyone who "
            "reaches that address could run code on every node of the cluster.",
            hint="Add --auth (clients then send a token), or --insecure-no-auth on a network you trust, or keep "
            "the default 127.0.0.1.",
        )
    extra = backend_specs([], urls)  # a malformed --url is refused before anything starts
    comfyui_dir = settings.comfyui_dir.value
    if comfyui_dir is None and not dry_run:
        raise ConfigError("--ray needs --comfyui-dir (or COMFYUI_DIR): the ComfyUI folder, the same path on every node.")
    ray = require_ray()
    options = RayFleetOptions(
        # Absolute: the actors' working folder is Ray's, not ours (the same path on every node).
        address=None if address == "auto" else address, comfyui_dir=str(comfyui_dir.absolute() if comfyui_dir else ""),
        python=node_python(str(settings.python.value)), comfyui_args=(*settings.comfyui_args.value, *settings.extra_args),
        max_workers=max_workers, supervisor=supervisor,
        # The same path on every node, as the ComfyUI folder: each worker's log is its own file there.
        log_dir=str(log_dir.absolute()) if log_dir is not None else None,
    )
    if dry_run:
        fleet = RayFleet(ray, options, _NoRouter(), environ=settings.environ)
        try:
            nodes = fleet.join()
            rows = plan_workers(nodes, fleet.local_ip, max_workers)
        finally:
            fleet.leave()
        if json_out:
            print_json({"ray": address, "gateway": {"listen": listen, "port": port, "auth": auth},
                        "workers": [r.to_json() for r in rows]})
        else:
            from ..ui.ray_view import ray_plan_table

            console.print(ray_plan_table(rows, address))
            console.print(f"One URL for every GPU: http://{listen.split(',')[0]}:{port} (the gateway, on this machine)")
        return 0
    return _serve(settings, ray, options, console, listen=listen, port=port, auth=auth, extra=extra, plain=plain)


class _NoRouter:
    def add_backend(self, spec: Any) -> None:
        raise AssertionError("a dry run routes nothing")

    def remove_backend(self, name: str) -> None:
        raise AssertionError("a dry run routes nothing")


def _serve(settings: Settings, ray: Any, options: Any, console: Console, *, listen: str, port: int, auth: bool,
           extra: list[Any], plain: bool) -> int:
    from ..gateway.events import GatewayStarted
    from ..gateway.server import GatewayOptions
    from ..gateway.service import GatewayThread, gateway_token
    from ..launch.ray_fleet import RayFleet
    from ..launch.ray_record import write_record
    from ..launch.registry import state_dir
    from ..launch.signals import capture_signals
    from ..ui.gateway_view import describe_gateway
    from ..ui.ray_view import describe_ray, ray_dashboard

    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:  # the gateway's loop and the watcher both report
            console.print(Text(f"comfyrig: {line}"), soft_wrap=True)

    def on_gateway(event: GatewayEvent) -> None:
        if isinstance(event, GatewayStarted):  # it starts with no worker: they join once ready
            say(f"gateway: one ComfyUI URL {event.url}; the Ray workers join it as their ComfyUI gets ready")
            return
        say(describe_gateway(event))

    def on_fleet(event: RayFleetEvent) -> None:
        say(describe_ray(event))

    state = state_dir(settings.environ)
    token = None
    if auth:
        token, source = gateway_token(settings.environ, state)
        say(f"the gateway listens on {listen}: clients need its token, from {source}")
    gateway = GatewayThread(extra, GatewayOptions(host=listen, port=port, token=token), on_gateway)
    gateway.start()  # PortInUseError before any actor starts
    fleet = RayFleet(ray, options, gateway, on_fleet, environ=settings.environ)
    signals: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(target=fleet.run, args=(stop,), name="comfyrig-ray-watcher", daemon=True)
    # stdout carries comfyrig's lines alone: Ray's driver prints its own notices there ("(raylet)
    # The node ... has been marked dead ..."), which go to stderr instead (the event line
    # "node ... left the cluster" says it in comfyrig's words).
    console.file = sys.stdout
    # In a terminal (without --plain) a live table of the workers under the event lines, which
    # stay in the scrollback; in a pipe, the lines alone.
    live = None if plain or not console.is_terminal else Live(console=console, refresh_per_second=2)

    def frame() -> RenderableType:
        return ray_dashboard(options.address or "auto", gateway.url, fleet.workers(), gateway.view())

    # Until Ray is left: its notices keep coming while the actors stop ("Raylet is terminated").
    # (In a terminal the live table prints them above itself, on the terminal, like the lines.)
    record: Path | None = None
    with contextlib.redirect_stdout(sys.stderr):
        try:
            with capture_signals(signals.put), live or contextlib.nullcontext():
                # Written once Ctrl-C and 'comfyrig stop' (which reads it) are caught: the finally
                # below then always stops the gateway and removes it.
                record = write_record(state, gateway.url, port, options.address or "auto", auth)
                fleet.start()
                watcher.start()
                while watcher.is_alive():
                    if live is not None:
                        live.update(frame())
                    try:
                        signals.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    break
            stop.set()
            watcher.join(30)
        finally:
            stop.set()
            try:
                fleet.stop()
            finally:
                gateway.stop()
                if record is not None:
                    record.unlink(missing_ok=True)
    say("stopped")
    return 0
