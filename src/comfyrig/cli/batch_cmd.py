"""``comfyrig batch``: run one workflow many times across every GPU, journaled and resumable."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..batch.backends import Backend, FleetBackend, UrlBackend
from ..batch.dispatcher import BatchOptions
from ..batch.run import BatchRequest, run_batch
from ..comfy.urls import comfy_url
from ..errors import ConfigError
from ..ui.batch_view import BatchView
from ..ui.console import make_console
from . import options as o
from .app import command

__all__: list[str] = []

Many = list[str] | None


@command(
    "batch",
    help="Run WORKFLOW (API or UI format) once per variation on every GPU: a local fleet of one ComfyUI per GPU "
    "(default), running servers (--url) or a Ray cluster (--ray). Journaled in --out: run the same command again to resume.",
)
def batch_cmd(
    workflow: Annotated[Path, typer.Argument(help="The workflow JSON (ComfyUI's API format, or the UI format).", show_default=False)],
    out_text: Annotated[str, typer.Option("--out", "-o", help="Output folder: outputs/, journal.sqlite, manifest.jsonl, report.json.", show_default=False)],
    set_: Annotated[Many, typer.Option("--set", metavar="NODE.FIELD=VALUE", help="Set an input for every job, e.g. 3.seed=42 or \"Positive.text=a cat\". NODE: id, unique title or unique class.", rich_help_panel="Variations", show_default=False)] = None,
    sweep: Annotated[Many, typer.Option("--sweep", metavar="NODE.FIELD=SPEC", help="Vary an input: 1..100 (ends included), 0..1..0.25, a|b|c, @file (a value per line), @file.csv:column. Several: every combination.", rich_help_panel="Variations", show_default=False)] = None,
    zip_: Annotated[bool, typer.Option("--zip", help="Pair the sweeps value by value instead of combining them.", rich_help_panel="Variations")] = False,
    repeat: Annotated[int, typer.Option("--repeat", callback=o.bounded("--repeat", o.Bounds(minimum=1, maximum=1_000_000)), help="Run each variation N times.", rich_help_panel="Variations")] = 1,
    seed: Annotated[str | None, typer.Option("--seed", metavar="random|increment", help="Sampler seeds (inputs named seed/noise_seed): random per job (drawn once per --out folder, kept on resume), or the workflow's seed + job number.", rich_help_panel="Variations", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job count and the first jobs; start nothing.")] = False,
    url: Annotated[Many, typer.Option("--url", metavar="URL", help="Use this running ComfyUI instead of starting a fleet (repeatable).", rich_help_panel="Workers", show_default=False)] = None,
    ray: Annotated[str | None, typer.Option("--ray", metavar="auto|ADDRESS", help="Run on a Ray cluster: one actor per GPU, each with its own ComfyUI (pip install 'comfyrig\\[ray]').", rich_help_panel="Workers", show_default=False)] = None,
    job_timeout: Annotated[float, typer.Option("--job-timeout", callback=o.bounded("--job-timeout", o.SECONDS), help="Seconds without progress before a running job is interrupted and re-run elsewhere (0: never).", rich_help_panel="Faults")] = 600.0,
    retries: Annotated[int, typer.Option("--retries", callback=o.bounded("--retries", o.Bounds(minimum=0, maximum=100)), help="Re-runs of a job after system failures (a worker died or hung); application errors are never retried.", rich_help_panel="Faults")] = 2,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="On resume, run the jobs that failed before again.", rich_help_panel="Faults")] = False,
    ready_timeout: Annotated[float, typer.Option("--ready-timeout", callback=o.bounded("--ready-timeout", o.POSITIVE_SECONDS), help="Seconds to wait for the first worker to answer.", rich_help_panel="Workers")] = 300.0,
    gone_after: Annotated[float | None, typer.Option("--gone-after", callback=o.bounded("--gone-after", o.POSITIVE_SECONDS), help="With --ray: seconds a lost worker may stay away (its node rebooting) before it counts as gone: its finished outputs not fetched yet run again elsewhere, and the batch ends when every worker is gone. It is used again whenever it comes back. Default 60.", rich_help_panel="Workers", show_default=False)] = None,
    auto: o.Auto = False,
    dual: o.Dual = False,
    multi: o.Multi = False,
    single: o.Single = None,
    gpus: o.Gpus = None,
    cpu: o.Cpu = False,
    port: o.Port = None,
    comfyui_dir: o.ComfyDir = None,
    python: o.Python = None,
    env_file: o.EnvFile = None,
    comfyui_args: o.ComfyArgs = None,
    plain: Annotated[bool, typer.Option("--plain", help="One line per event instead of the live view (automatic in pipes).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary (or the --dry-run plan) as JSON on stdout.")] = False,
) -> int:
    # Taken as text: Typer would turn --out "" into Path("."), the current folder, silently.
    if not out_text.strip():
        raise ConfigError("--out is empty; give a folder for the results (it is created when missing).")
    out = Path(out_text)
    settings = o.settings_from(
        o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu, port=port,
                    comfyui_dir=comfyui_dir, python=python, env_file=env_file, comfyui_args=comfyui_args)
    )
    if url and ray:
        raise ConfigError("Choose --url or --ray, not both.")
    if gone_after is not None and not ray:
        raise ConfigError("--gone-after is about workers on a Ray cluster, whose node may be lost and come back: it "
                          "needs --ray.")
    if seed is not None and seed not in ("random", "increment"):
        raise ConfigError(f"--seed {seed!r}: choose random or increment.")
    backend: Backend
    if url:
        backend = UrlBackend([comfy_url(u, "--url") for u in url])
    elif ray:
        from ..batch.ray_backend import RayBackend
        from ..launch.ray_worker import RAY_SUPERVISOR

        backend = RayBackend(ray, settings, supervisor=dataclasses.replace(RAY_SUPERVISOR, ready_timeout_s=ready_timeout),
                             gone_after_s=60.0 if gone_after is None else gone_after)
    else:
        from ..launch.compose import LaunchRequest, compose, gather_facts
        from ..launch.supervisor import SupervisorOptions
        from .launch_cmd import NO_COMFYUI

        plan = compose(settings, gather_facts(settings), LaunchRequest(workers=True, log_dir=out / "logs", owner="batch"))
        if plan.comfyui_dir is None and not dry_run:
            raise ConfigError(NO_COMFYUI, hint="Or pass --url of a running ComfyUI.")
        sup = SupervisorOptions(restart="on-failure", ready_timeout_s=ready_timeout, restart_delay_s=0.5)
        backend = FleetBackend(plan, settings.environ, sup)
    options = BatchOptions(
        out_dir=out, retries=retries, job_timeout_s=job_timeout or None, retry_failed=retry_failed,
    )
    request = BatchRequest(
        workflow=workflow, out_dir=out, sets=tuple(set_ or ()), sweeps=tuple(sweep or ()), zipped=zip_,
        repeat=repeat, seed=seed or "keep", dry_run=dry_run, ready_timeout_s=ready_timeout, options=options,
    )
    console = make_console(settings.environ)
    # With --json, stdout carries only the JSON: progress goes to stderr.
    progress = make_console(settings.environ, stderr=True) if json_out else console
    view = BatchView(console, progress=progress, live=not (plain or json_out) and progress.is_terminal, json_out=json_out,
                     out=sys.stdout if json_out else None)  # the real stdout, taken before the redirect below
    try:
        if not json_out:
            return run_batch(request, backend, view)
        # stdout carries the JSON alone: anything else printed there while the batch runs (Ray's
        # driver prints "(raylet) ... marked dead" there when a node is lost) goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return run_batch(request, backend, view)
    finally:
        view.close()
