"""Options shared by every command that selects GPUs or reads settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from ..config.numbers import Bounds, check_number
from ..config.settings import CliOverrides, Settings, resolve_settings
from ..errors import ConfigError

__all__ = ["COUNT", "PORT", "POSITIVE_SECONDS", "SECONDS", "Bounds", "bounded", "overrides", "settings_from"]

N = TypeVar("N", int, float, int | None, float | None)

# The shared limits of the numeric options: finite, and a day is the longest wait that is not a typo.
SECONDS = Bounds(minimum=0, maximum=86_400, unit="seconds")
POSITIVE_SECONDS = Bounds(above=0, maximum=86_400, unit="seconds")
COUNT = Bounds(minimum=1, maximum=1_000_000)
PORT = Bounds(minimum=1, maximum=65535)


def bounded(flag: str, bounds: Bounds) -> Callable[[N], N]:
    """A Typer callback that checks a numeric option with the one rule (``config.numbers``).

    It raises ConfigError, which ``run_app`` renders like any other: Typer has already
    turned the text into a number, so ``nan``, ``inf`` and ranges are what is left to check.
    """

    def check(value: N) -> N:
        if value is not None:
            check_number(value, flag, bounds)
        return value

    return check


Auto = Annotated[bool, typer.Option("--auto", help="Pick the mode from the GPUs present (default).", rich_help_panel="GPU mode")]
Dual = Annotated[bool, typer.Option("--dual", help="The first two GPUs, both visible to one ComfyUI.", rich_help_panel="GPU mode")]
Multi = Annotated[bool, typer.Option("--multi", help="Every GPU.", rich_help_panel="GPU mode")]
Single = Annotated[int | None, typer.Option("--single", metavar="N", callback=bounded("--single", Bounds(minimum=0, maximum=1023)), help="Only GPU N (nvidia-smi numbering).", rich_help_panel="GPU mode", show_default=False)]
Gpus = Annotated[str | None, typer.Option("--gpus", metavar="LIST", help="Ordered list: indices, GPU- UUIDs or MIG- ids, e.g. 1,0.", rich_help_panel="GPU mode", show_default=False)]
Cpu = Annotated[bool, typer.Option("--cpu", help="No GPU at all: every GPU hidden, ComfyUI's --cpu.", rich_help_panel="GPU mode")]
Port = Annotated[str | None, typer.Option("--port", help="Port (default 8188), or 'auto' for the next free one.", show_default=False)]
Listen = Annotated[str | None, typer.Option("--listen", help="Address ComfyUI listens on (default 127.0.0.1).", show_default=False)]
# Paths are taken as text: Typer would turn "" into Path("."), the current folder, silently.
ComfyDir = Annotated[str | None, typer.Option("--comfyui-dir", help="The ComfyUI checkout (holds main.py).", show_default=False)]
Python = Annotated[str | None, typer.Option("--python", help="ComfyUI's Python interpreter.", show_default=False)]
EnvFile = Annotated[str | None, typer.Option("--env-file", help="Read this .env instead of ComfyUI's or the current folder's.", show_default=False)]
ComfyArgs = Annotated[str | None, typer.Option("--comfyui-args", help="Extra ComfyUI flags as one string (like COMFYUI_ARGS).", show_default=False)]
Manager = Annotated[bool | None, typer.Option("--enable-manager/--no-enable-manager", "--manager/--no-manager", help="Pass ComfyUI's --enable-manager (--manager: the old launcher scripts' name).", show_default=False)]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def overrides(
    *,
    auto: bool = False,
    dual: bool = False,
    multi: bool = False,
    single: int | None = None,
    gpus: str | None = None,
    cpu: bool = False,
    port: str | None = None,
    listen: str | None = None,
    comfyui_dir: Path | str | None = None,
    python: str | None = None,
    env_file: Path | str | None = None,
    comfyui_args: str | None = None,
    enable_manager: bool | None = None,
    extra_args: list[str] | None = None,
) -> CliOverrides:
    return CliOverrides(
        auto=auto,
        dual=dual,
        multi=multi,
        single=single,
        gpus=gpus,
        cpu=cpu,
        port=port,
        listen=listen,
        comfyui_dir=_path("--comfyui-dir", comfyui_dir),
        python=python,
        env_file=_path("--env-file", env_file),
        comfyui_args=comfyui_args,
        enable_manager=enable_manager,
        extra_args=tuple(extra_args or ()),
    )


def _path(flag: str, value: Path | str | None) -> Path | None:
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{flag} is empty.", hint="Give a path, or leave the option out.")
    return Path(value) if value is not None else None


def settings_from(cli: CliOverrides) -> Settings:
    """The CLI edge is where the process environment is read, once."""
    return resolve_settings(cli, dict(os.environ), Path.cwd())
