"""``comfyrig launch`` (also plain ``comfyrig``): plan, show, then start and supervise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.text import Text

from ..errors import ConfigError
from ..files import check_writable_dir
from ..host.ports import port_is_free, who_holds
from ..launch.compose import LaunchRequest, compose, gather_facts
from ..launch.events import FleetSnapshot
from ..launch.plan import LaunchPlan, is_loopback
from ..launch.policy import RESTART_POLICIES
from ..ui.console import make_console
from ..ui.launch_view import render_plan
from . import options as o
from .app import RAW_ARGS, ComfyFlagsCommand, command, extra_args_after_dashes
from .report import print_json

if TYPE_CHECKING:
    from ..gateway.events import GatewayEvent
    from ..gateway.service import GatewayThread

__all__: list[str] = []

NO_COMFYUI = (
    "No ComfyUI found: none was given and the current folder has no main.py. "
    "Point comfyrig at a checkout with --comfyui-dir DIR or COMFYUI_DIR=DIR (in the environment or .env), "
    "or get one with 'comfyrig install' (ComfyUI in ./ComfyUI with its own .venv and the PyTorch build "
    "this machine's driver runs; comfyrig finds ComfyUI/.venv by itself)."
)


@command(
    "launch",
    help="Start ComfyUI in the chosen GPU mode and supervise it. Arguments after -- go to ComfyUI.",
    context_settings={"allow_extra_args": False},
    cls=ComfyFlagsCommand,
)
def launch_cmd(
    extra: Annotated[list[str] | None, typer.Argument(help="ComfyUI flags, after --.", show_default=False)] = None,
    auto: o.Auto = False,
    dual: o.Dual = False,
    multi: o.Multi = False,
    single: o.Single = None,
    gpus: o.Gpus = None,
    cpu: o.Cpu = False,
    port: o.Port = None,
    listen: o.Listen = None,
    comfyui_dir: o.ComfyDir = None,
    python: o.Python = None,
    env_file: o.EnvFile = None,
    comfyui_args: o.ComfyArgs = None,
    enable_manager: o.Manager = None,
    workers: Annotated[bool, typer.Option("--workers", help="One ComfyUI per selected GPU, behind one URL (the gateway) on --port; workers on the loopback ports after it.")] = False,
    gateway: Annotated[bool, typer.Option("--gateway/--no-gateway", help="With --workers: serve one ComfyUI URL in front of them (default), or give each worker its own port on --listen.")] = True,
    urls: Annotated[list[str] | None, typer.Option("--url", help="Also put this ComfyUI server (http://HOST:PORT), not started by comfyrig, behind the gateway. Repeatable.", show_default=False)] = None,
    auth: Annotated[bool, typer.Option("--auth", help="The gateway asks every client for a token (COMFYRIG_AUTH_TOKEN, or one comfyrig keeps in its state folder); required with a --listen beyond loopback.")] = False,
    insecure_no_auth: Annotated[bool, typer.Option("--insecure-no-auth", help="Serve the gateway beyond loopback without a token (anyone who reaches it can run code here).")] = False,
    restart: Annotated[str | None, typer.Option("--restart", help="Restart policy: no, on-failure or always (default: no; on-failure for workers on a Ray cluster, which nobody watches).", show_default=False)] = None,
    restart_delay: Annotated[float, typer.Option("--restart-delay", callback=o.bounded("--restart-delay", o.SECONDS), help="First restart delay in seconds; doubles per failure.")] = 1.0,
    ready_timeout: Annotated[float, typer.Option("--ready-timeout", callback=o.bounded("--ready-timeout", o.POSITIVE_SECONDS), help="Seconds to wait for ComfyUI's HTTP API.")] = 300.0,
    stop_timeout: Annotated[float, typer.Option("--stop-timeout", callback=o.bounded("--stop-timeout", o.SECONDS), help="Seconds between SIGINT and SIGKILL on stop.")] = 10.0,
    hang_timeout: Annotated[float, typer.Option("--hang-timeout", callback=o.bounded("--hang-timeout", o.SECONDS), help="Kill a ready ComfyUI that has not answered HTTP for this many seconds (then --restart decides); 0: never.")] = 60.0,
    plain: Annotated[bool, typer.Option("--plain", help="Raw log lines instead of the dashboard (automatic in pipes).")] = False,
    log_dir_text: Annotated[str | None, typer.Option("--log-dir", help="Where the full logs go (default: ComfyUI's user/).", show_default=False)] = None,
    placement: Annotated[str | None, typer.Option("--placement", help="CPU placement: auto (default with --workers) or none.", show_default=False)] = None,
    cpus_per_worker: Annotated[int | None, typer.Option("--cpus-per-worker", callback=o.bounded("--cpus-per-worker", o.COUNT), help="CPUs pinned per worker (placement auto).", show_default=False)] = None,
    threads_per_worker: Annotated[int | None, typer.Option("--threads-per-worker", callback=o.bounded("--threads-per-worker", o.COUNT), help="OMP/MKL threads per worker (placement auto).", show_default=False)] = None,
    ray: Annotated[str | None, typer.Option("--ray", metavar="auto|ADDRESS", help="With --workers: one worker per GPU of every node of the Ray cluster at HEAD:PORT (auto: the one this machine belongs to), behind the gateway here (pip install 'comfyrig\\[ray]').", show_default=False)] = None,
    max_workers: Annotated[int | None, typer.Option("--max-workers", callback=o.bounded("--max-workers", o.COUNT), help="With --ray: at most this many workers.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run, start nothing.")] = False,
    json_out: o.JsonOut = False,
) -> int:
    settings = o.settings_from(
        o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu, port=port,
                    listen=listen, comfyui_dir=comfyui_dir, python=python, env_file=env_file,
                    comfyui_args=comfyui_args, enable_manager=enable_manager, extra_args=extra)
    )
    extra_args_after_dashes(RAW_ARGS, extra)
    if cpu and workers:
        raise ConfigError(
            "--workers starts one ComfyUI per GPU, and --cpu uses none: there is nothing to split.",
            hint="Drop --workers to run one ComfyUI on the CPU, or drop --cpu to run one per GPU.",
        )
    if json_out and not dry_run:
        raise ConfigError(
            "--json prints the launch plan and needs --dry-run: a running launch shows the dashboard, "
            "or one line per event with --plain.",
            hint="Use 'comfyrig launch --dry-run --json', or 'comfyrig status --json' for what is running.",
        )
    restart = restart if restart is not None else ("on-failure" if ray is not None else "no")
    if restart not in RESTART_POLICIES:
        raise ConfigError(f"--restart {restart!r}: choose one of {', '.join(RESTART_POLICIES)}.")
    log_dir = None
    if log_dir_text is not None:
        if not log_dir_text.strip():
            raise ConfigError("--log-dir is empty.", hint="Give a folder, or leave it out for ComfyUI's user folder.")
        # Checked before anything starts: a file in the way surfaced as "could not start python: Not a directory".
        log_dir = check_writable_dir(Path(log_dir_text), "--log-dir", create=not dry_run)
    if placement not in (None, "auto", "none"):
        raise ConfigError(f"--placement {placement!r}: choose auto or none.")
    if placement == "none" and (cpus_per_worker or threads_per_worker):
        raise ConfigError("--cpus-per-worker and --threads-per-worker need --placement auto.")
    if (auth or insecure_no_auth) and not (workers and gateway):
        raise ConfigError("--auth and --insecure-no-auth are about the gateway: they need --workers (and not --no-gateway).")
    if auth and insecure_no_auth:
        raise ConfigError("--auth and --insecure-no-auth contradict each other: choose one.")
    if urls and not (workers and gateway):
        raise ConfigError("--url puts a server behind the gateway: it needs --workers (and not --no-gateway).")
    from ..launch.supervisor import SupervisorOptions

    options = SupervisorOptions(
        restart=restart,  # checked above
        ready_timeout_s=ready_timeout,
        stop_timeout_s=stop_timeout,
        restart_delay_s=restart_delay,
        hang_timeout_s=hang_timeout,
    )
    if max_workers is not None and ray is None:
        raise ConfigError("--max-workers caps the workers on a Ray cluster: it needs --ray.")
    if ray is not None:
        if not (workers and gateway):
            raise ConfigError("--ray runs one worker per GPU of the cluster behind the gateway: it needs --workers "
                              "(and not --no-gateway).", hint="Use 'comfyrig --workers --ray HEAD:6379'.")
        if gpus or single is not None or dual or multi or auto or placement or cpus_per_worker or threads_per_worker:
            raise ConfigError("--ray takes every GPU Ray gives each node; GPU and CPU selection flags are for "
                              "workers on this machine.", hint="Drop them (--gpus, --single, --dual, --multi, "
                              "--auto, --placement, --cpus-per-worker, --threads-per-worker).")
        from .ray_launch import run_ray_workers

        return run_ray_workers(settings, ray, make_console(settings.environ), dry_run=dry_run, json_out=json_out,
                               auth=auth, insecure_no_auth=insecure_no_auth, urls=tuple(urls or ()),
                               max_workers=max_workers, supervisor=options, log_dir=log_dir,
                               plain=plain)
    request = LaunchRequest(
        workers=workers, placement=placement,  # type: ignore[arg-type]  # checked above
        cpus_per_worker=cpus_per_worker, threads_per_worker=threads_per_worker, log_dir=log_dir,
        gateway=workers and gateway, urls=tuple(urls or ()), auth=auth, insecure_no_auth=insecure_no_auth,
    )
    plan = compose(settings, gather_facts(settings), request)
    if plan.gateway is not None:
        from ..gateway.service import backend_specs

        backend_specs([], plan.gateway.urls)  # a malformed --url is refused before anything starts
    console = make_console(settings.environ)
    if dry_run:
        if json_out:
            print_json(plan.to_json())
        else:
            console.print(render_plan(plan))
            _busy_port_notes(console, plan)
            if plan.comfyui_dir is None:
                console.print(Text(NO_COMFYUI, style="yellow"))
        return 0
    if plan.comfyui_dir is None:
        console.print(render_plan(plan))
        console.print(Text(NO_COMFYUI, style="yellow"))
        return 0
    from rich.live import Live

    from .. import __version__
    from ..launch.fleet import Fleet, check_ports
    from ..launch.signals import capture_signals
    from ..ui.dashboard import dashboard
    from ..ui.launch_view import PlainLaunchView, exit_report

    check_ports(plan)  # before anything is drawn: PortInUseError names the holder
    plain_view = PlainLaunchView(plan, console) if plain or not console.is_terminal else None
    gateway_thread = _start_gateway(plan, settings.environ, console, plain_view is not None, settings.fake_gpus)
    try:
        if plain_view is not None:
            plain_view.preamble()
            fleet = Fleet(plan, settings.environ, options, reporter=plain_view)
            with capture_signals(fleet.signal):
                code = fleet.run()
        else:
            fleet = Fleet(plan, settings.environ, options)
            title = f"comfyrig {__version__} · ComfyUI · {plan.mode} mode · {len(plan.instances)} instance(s)"

            def frame(snapshot: FleetSnapshot) -> RenderableType:
                return dashboard(plan, snapshot, title, gateway_thread.view() if gateway_thread else None)

            with capture_signals(fleet.signal), Live(frame(fleet.snapshot()), console=console, refresh_per_second=4,
                                                     transient=False) as live:
                code = fleet.run(on_tick=lambda snapshot: live.update(frame(snapshot)))
    finally:
        if gateway_thread is not None:
            gateway_thread.stop()
    for part in exit_report(fleet.snapshot(), fleet.plan):
        console.print(part, soft_wrap=True)
    return code


def _gpu_stats(fake_gpus: str | None) -> Callable[[], list[dict[str, Any]]]:
    """The GPUs' utilisation and memory for the gateway's fleet view and metrics: the monitor's
    sampler (NVML, or the simulated GPUs), opened on first use and kept."""
    from ..monitor.sampler import open_sampler

    state: dict[str, Any] = {"tick": 0}

    def read() -> list[dict[str, Any]]:
        if "sampler" not in state:
            state["sampler"] = open_sampler(fake_gpus)
        state["tick"] += 1
        return [{"index": g.index, "name": g.name, "utilization_pct": g.utilization_pct,
                 "memory_used_mib": g.memory_used_mib, "memory_total_mib": g.memory_total_mib}
                for g in state["sampler"].sample(state["tick"])]

    return read


def _start_gateway(plan: LaunchPlan, environ: Mapping[str, str], console: Console, plain: bool,
                   fake_gpus: str | None = None) -> GatewayThread | None:
    """Bind the gateway before any worker starts (a taken port is an error, not a fleet without
    its URL). Its events are printed as lines in plain mode; the dashboard shows its panel."""
    if plan.gateway is None:
        return None
    from ..gateway.events import NodesDiffer
    from ..gateway.server import GatewayOptions
    from ..gateway.service import GatewayThread, backend_specs, gateway_token
    from ..launch.registry import state_dir
    from ..ui.gateway_view import describe_gateway

    token = None
    if plan.gateway.auth:
        token, source = gateway_token(environ, state_dir(environ))
        console.print(Text(f"The gateway listens on {plan.gateway.listen}: clients need its token, from {source} "
                           "(send it as 'Authorization: Bearer TOKEN', or open the page once as /?token=TOKEN).",
                           style="yellow"), soft_wrap=True)
    elif not is_loopback(plan.gateway.listen):
        console.print(Text(f"⚠ The gateway listens on {plan.gateway.listen} without a token (--insecure-no-auth): "
                           "anyone who reaches that address can run code on this machine.", style="bold yellow"),
                      soft_wrap=True)

    def report(event: GatewayEvent) -> None:
        if plain or isinstance(event, NodesDiffer):
            console.print(Text(f"comfyrig: {describe_gateway(event)}"), soft_wrap=True)

    specs = backend_specs([(i.name, i.url, i.gpu_indices) for i in plan.instances], plan.gateway.urls)
    thread = GatewayThread(specs, GatewayOptions(host=plan.gateway.listen, port=plan.gateway.port, token=token), report,
                           gpu_stats=_gpu_stats(fake_gpus))
    thread.start()
    return thread


def _busy_port_notes(console: Console, plan: LaunchPlan) -> None:
    for inst in plan.instances:
        if not port_is_free(inst.port, inst.listen.split(",")[0]):
            holder = who_holds(inst.port)
            who = f" (pid {holder.pid}: {holder.command})" if holder else ""
            console.print(Text(f"⚠ port {inst.port} is already in use{who}; a real launch would stop here.", style="yellow"))
