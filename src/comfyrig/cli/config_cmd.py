"""``comfyrig config``: flags -> Settings -> every value with its source."""

from __future__ import annotations

from ..ui.config_view import settings_json, settings_table
from ..ui.console import make_console
from . import options as o
from .app import command
from .report import print_json

__all__: list[str] = []


@command("config", help="Show every effective setting and where it came from (cli, env, .env:LINE, default).")
def config_cmd(
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
    json_out: o.JsonOut = False,
) -> int:
    settings = o.settings_from(
        o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu, port=port,
                    listen=listen, comfyui_dir=comfyui_dir, python=python, env_file=env_file,
                    comfyui_args=comfyui_args, enable_manager=enable_manager)
    )
    rows = settings.table()
    if json_out:
        print_json(settings_json(rows))
    else:
        make_console(settings.environ).print(settings_table(rows))
    return 0
