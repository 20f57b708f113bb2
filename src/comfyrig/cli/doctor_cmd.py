"""``comfyrig doctor``: run every check, print the table (or JSON), exit 1 if one failed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..doctor import exit_code, gather, run_checks
from ..ui.console import make_console
from ..ui.doctor_view import doctor_view
from . import options as o
from .app import RAW_ARGS, command, extra_args_after_dashes

__all__: list[str] = []


@command(
    "doctor",
    help="Check the driver, GPUs, mode, ComfyUI, torch, .env, flags, port and node packs; "
    "exit 1 if a check failed. Arguments after -- are checked as ComfyUI flags.",
)
def doctor_cmd(
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
    torch: Annotated[
        bool | None,
        typer.Option(
            "--torch/--no-torch",
            help="Ask torch in ComfyUI's interpreter (a child process; seconds). "
            "Default: on when a ComfyUI interpreter is found.",
            show_default=False,
        ),
    ] = None,
    json_out: o.JsonOut = False,
) -> int:
    extra_args_after_dashes(RAW_ARGS, extra)
    cli = o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu, port=port,
                      listen=listen, comfyui_dir=comfyui_dir, python=python, env_file=env_file,
                      comfyui_args=comfyui_args, enable_manager=enable_manager, extra_args=extra)
    environ = dict(os.environ)  # the CLI edge reads the environment, once
    # Flag conflicts (two GPU modes) are the user's typing, not the machine's state: report them as usual.
    cli.gpu_request()
    results = run_checks(gather(cli, environ, Path.cwd(), torch=torch))
    if json_out:
        sys.stdout.write(json.dumps({"checks": [r.to_json() for r in results]}, indent=2) + "\n")
    else:
        make_console(environ).print(doctor_view(results))
    return exit_code(results)
