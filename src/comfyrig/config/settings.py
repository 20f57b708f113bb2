"""The one settings object, resolved once, with where each value came from.

Precedence, highest first: command-line flags > process environment > the
.env file > built-in defaults. ``resolve_settings`` is the only function in
comfyrig that reads the process environment (passed in as a mapping) or the
.env file; everything after it takes the frozen ``Settings``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

from ..errors import ComfyUINotFoundError, ConfigError
from ..secrets import mask_value
from .envfile import EnvFile, read_env_file
from .interpreter import find_python
from .modes import GpuRequest

__all__ = [
    "KNOWN_KEYS",
    "CliOverrides",
    "Settings",
    "Sourced",
    "env_file_candidates",
    "parse_gpu_list",
    "resolve_settings",
]

# Keys comfyrig reads from the environment and .env. Anything else in .env is
# passed through to ComfyUI's environment untouched.
KNOWN_KEYS = (
    "CUDA_VISIBLE_DEVICES",
    "COMFYUI_PORT",
    "COMFYUI_LISTEN",
    "COMFYUI_ARGS",
    "ENABLE_COMFYUI_MANAGER",
    "COMFYUI_DIR",
    "COMFYUI_PYTHON",
    "PYTORCH_ALLOC_CONF",
    "PYTORCH_CUDA_ALLOC_CONF",
)
DEFAULT_PORT = 8188
DEFAULT_LISTEN = "127.0.0.1"

T_co = TypeVar("T_co", covariant=True)
# A port number, or "auto": the next free one from 8188, chosen at launch.
PortSetting = int | Literal["auto"]


@dataclass(frozen=True)
class Sourced(Generic[T_co]):
    """A value and where it came from: "cli", "env", ".env:LINE", "default" or "derived"."""

    value: T_co
    source: str


@dataclass(frozen=True)
class CliOverrides:
    """What the command line said; None means "not given"."""

    auto: bool = False
    dual: bool = False
    multi: bool = False
    cpu: bool = False
    single: int | None = None
    gpus: str | None = None
    port: str | None = None
    listen: str | None = None
    comfyui_dir: Path | None = None
    python: str | None = None
    env_file: Path | None = None
    comfyui_args: str | None = None
    enable_manager: bool | None = None
    extra_args: tuple[str, ...] = ()

    def gpu_request(self) -> GpuRequest | None:
        chosen = [
            name
            for name, on in (
                ("--auto", self.auto),
                ("--dual", self.dual),
                ("--multi", self.multi),
                ("--cpu", self.cpu),
                ("--single", self.single is not None),
                ("--gpus", self.gpus is not None),
            )
            if on
        ]
        if len(chosen) > 1:
            raise ConfigError(
                f"Choose one GPU mode, not {' and '.join(chosen)}.",
                hint="Modes: --auto, --dual, --multi, --single N, --gpus LIST, --cpu.",
            )
        if self.single is not None:
            return GpuRequest("single", (str(self.single),))
        if self.gpus is not None:
            if not self.gpus.strip():
                # An empty list is no GPU at all, which is --cpu; said so rather than guessed.
                raise ConfigError("--gpus is empty.", hint="Give GPU numbers or ids such as --gpus 0,1, or --cpu for no GPU.")
            return GpuRequest("gpus", parse_gpu_list(self.gpus, "--gpus"))
        for kind in ("auto", "dual", "multi", "cpu"):
            if getattr(self, kind):
                return GpuRequest(kind)
        return None


@dataclass(frozen=True)
class Settings:
    """Everything a comfyrig command needs to know, resolved once.

    ``environ`` is the process environment the children inherit; ``passthrough``
    the .env variables that are not comfyrig's own, given to ComfyUI as well.
    """

    gpu_request: Sourced[GpuRequest]
    port: Sourced[PortSetting]
    listen: Sourced[str]
    comfyui_args: Sourced[tuple[str, ...]]  # split as a shell would (no shell runs)
    enable_manager: Sourced[bool]
    comfyui_dir: Sourced[Path | None]
    python: Sourced[str]
    pytorch_alloc_conf: Sourced[str | None]
    pytorch_cuda_alloc_conf: Sourced[str | None]
    env_file: Path | None
    passthrough: Mapping[str, Sourced[str]]
    extra_args: tuple[str, ...]
    environ: Mapping[str, str] = field(repr=False)
    fake_gpus: str | None = None

    def table(self) -> dict[str, Sourced[object]]:
        """Every effective value by its public name, for ``comfyrig config``."""
        rows: dict[str, Sourced[object]] = {
            "GPU_MODE": Sourced(self.gpu_request.value.describe(), self.gpu_request.source),
            "COMFYUI_PORT": self.port,
            "COMFYUI_LISTEN": self.listen,
            "COMFYUI_ARGS": Sourced(shlex.join(self.comfyui_args.value), self.comfyui_args.source),
            "ENABLE_COMFYUI_MANAGER": self.enable_manager,
            "COMFYUI_DIR": Sourced(
                str(self.comfyui_dir.value) if self.comfyui_dir.value else None, self.comfyui_dir.source
            ),
            # Not found is shown as unset: 'launch' refuses comfyrig's own interpreter rather than use it.
            "COMFYUI_PYTHON": self.python if self.python.source != "default" else Sourced(None, "default"),
            "PYTORCH_ALLOC_CONF": self.pytorch_alloc_conf,
            "PYTORCH_CUDA_ALLOC_CONF": self.pytorch_cuda_alloc_conf,
            "ENV_FILE": Sourced(str(self.env_file) if self.env_file else None, "derived"),
        }
        if self.fake_gpus is not None:
            rows["COMFYRIG_FAKE_GPUS"] = Sourced(self.fake_gpus, "env")
        for name, value in sorted(self.passthrough.items()):
            rows[name] = value
        return {name: Sourced(mask_value(name, v.value), v.source) for name, v in rows.items()}


def parse_gpu_list(text: str, origin: str) -> tuple[str, ...]:
    """Split "1,0" / "GPU-..,GPU-.." into items (empty items kept, to be reported)."""
    stripped = text.strip()
    if not stripped:
        return ()
    return tuple(item.strip() for item in stripped.split(","))


class _Layers:
    """CLI > environment > .env > default lookup for one key."""

    def __init__(self, environ: Mapping[str, str], env_file: EnvFile | None) -> None:
        self.environ = environ
        self.env_file = env_file

    def get(self, key: str, cli: object = None) -> Sourced[object] | None:
        if cli is not None:
            return Sourced(cli, "cli")
        if key in self.environ:
            return Sourced(self.environ[key], "env")
        if self.env_file is not None and key in self.env_file.values:
            return Sourced(self.env_file.values[key], self.env_file.source_of(key))
        return None


def _where(src: Sourced[object], key: str, flag: str) -> str:
    if src.source == "cli":
        return flag
    if src.source == "env":
        return f"the environment variable {key}"
    return f"{key} in .env (line {src.source.split(':', 1)[1]})"


def resolve_settings(cli: CliOverrides, environ: Mapping[str, str], cwd: Path) -> Settings:
    """Build the Settings; raises ConfigError / ComfyUINotFoundError for bad input."""
    pre = _Layers(environ, None)
    dir_hint = pre.get("COMFYUI_DIR", cli.comfyui_dir)
    env_file = _load_env_file(cli.env_file, dir_hint, cwd, environ)
    layers = _Layers(environ, env_file)

    comfyui_dir = _comfyui_dir(layers, cli, cwd)
    python = _python(layers, cli, comfyui_dir.value, environ)
    passthrough = {}
    if env_file is not None:
        passthrough = {
            key: Sourced(value, env_file.source_of(key))
            for key, value in env_file.values.items()
            if key not in KNOWN_KEYS
        }
    return Settings(
        gpu_request=_gpu_request(layers, cli),
        port=_port(layers, cli),
        listen=_listen(layers, cli),
        comfyui_args=_comfyui_args(layers, cli),
        enable_manager=_enable_manager(layers, cli),
        comfyui_dir=comfyui_dir,
        python=python,
        pytorch_alloc_conf=_text(layers, "PYTORCH_ALLOC_CONF"),
        pytorch_cuda_alloc_conf=_text(layers, "PYTORCH_CUDA_ALLOC_CONF"),
        env_file=env_file.path if env_file else None,
        passthrough=passthrough,
        extra_args=cli.extra_args,
        environ=dict(environ),
        fake_gpus=environ.get("COMFYRIG_FAKE_GPUS"),
    )


def env_file_candidates(explicit: Path | None, comfyui_dir: object | None, cwd: Path) -> tuple[Path, ...]:
    """Where the .env is looked for, in order: --env-file alone, else COMFYUI_DIR/.env, then ./.env."""
    if explicit is not None:
        return (explicit if explicit.is_absolute() else cwd / explicit,)
    candidates = []
    if comfyui_dir is not None:
        candidates.append(Path(str(comfyui_dir)).expanduser() / ".env")
    candidates.append(cwd / ".env")
    return tuple(candidates)


def _load_env_file(
    explicit: Path | None, dir_hint: Sourced[object] | None, cwd: Path, environ: Mapping[str, str]
) -> EnvFile | None:
    candidates = env_file_candidates(explicit, dir_hint.value if dir_hint is not None else None, cwd)
    if explicit is not None:
        # Read whatever it is: a folder, a FIFO or a missing file is an error naming --env-file.
        return read_env_file(candidates[0], environ, what="the --env-file")
    for path in candidates:
        if path.is_file():
            return read_env_file(path, environ)
    return None


def _text(layers: _Layers, key: str) -> Sourced[str | None]:
    src = layers.get(key)
    return Sourced(str(src.value), src.source) if src is not None else Sourced(None, "default")


def _gpu_request(layers: _Layers, cli: CliOverrides) -> Sourced[GpuRequest]:
    request = cli.gpu_request()
    if request is not None:
        return Sourced(request, "cli")
    cvd = layers.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        origin = _where(cvd, "CUDA_VISIBLE_DEVICES", "")
        return Sourced(GpuRequest("visible", parse_gpu_list(str(cvd.value), origin)), cvd.source)
    return Sourced(GpuRequest("auto"), "default")


def _port(layers: _Layers, cli: CliOverrides) -> Sourced[PortSetting]:
    src = layers.get("COMFYUI_PORT", cli.port)
    if src is None:
        return Sourced(DEFAULT_PORT, "default")
    text = str(src.value).strip()
    if text == "auto":
        return Sourced("auto", src.source)
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError(
            f"{_where(src, 'COMFYUI_PORT', '--port')} is {text!r}; a port must be a whole number from 1 to 65535 (or 'auto')."
        )
    return Sourced(port, src.source)


def _listen(layers: _Layers, cli: CliOverrides) -> Sourced[str]:
    src = layers.get("COMFYUI_LISTEN", cli.listen)
    if src is None:
        return Sourced(DEFAULT_LISTEN, "default")
    text = str(src.value).strip()
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"{_where(src, 'COMFYUI_LISTEN', '--listen')} is {text!r}; give an address such as 127.0.0.1.")
    return Sourced(text, src.source)


def _comfyui_args(layers: _Layers, cli: CliOverrides) -> Sourced[tuple[str, ...]]:
    src = layers.get("COMFYUI_ARGS", cli.comfyui_args)
    if src is None:
        return Sourced((), "default")
    try:
        return Sourced(tuple(shlex.split(str(src.value))), src.source)
    except ValueError as exc:
        raise ConfigError(f"{_where(src, 'COMFYUI_ARGS', '--comfyui-args')} cannot be split into arguments: {exc}.") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _enable_manager(layers: _Layers, cli: CliOverrides) -> Sourced[bool]:
    src = layers.get("ENABLE_COMFYUI_MANAGER", cli.enable_manager)
    if src is None:
        return Sourced(False, "default")
    if isinstance(src.value, bool):
        return Sourced(src.value, src.source)
    text = str(src.value).strip().lower()
    if text in _TRUE | _FALSE:
        return Sourced(text in _TRUE, src.source)
    raise ConfigError(f"{_where(src, 'ENABLE_COMFYUI_MANAGER', '')} is {src.value!r}; use true or false.")


def _comfyui_dir(layers: _Layers, cli: CliOverrides, cwd: Path) -> Sourced[Path | None]:
    src = layers.get("COMFYUI_DIR", cli.comfyui_dir)
    if src is None:
        if (cwd / "main.py").is_file():
            return Sourced(cwd, "derived")
        return Sourced(None, "default")
    if not str(src.value).strip():
        # An empty value would be the current folder: a silent guess that hides a typo in .env.
        raise ComfyUINotFoundError(
            f"{_where(src, 'COMFYUI_DIR', '--comfyui-dir')} is empty.",
            hint="Give the folder that holds ComfyUI's main.py, or remove the setting to use the current folder.",
        )
    path = Path(str(src.value)).expanduser()
    path = path if path.is_absolute() else cwd / path
    if not (path / "main.py").is_file():
        what = "does not exist" if not path.exists() else "has no main.py, so it is not a ComfyUI checkout"
        raise ComfyUINotFoundError(
            f"{_where(src, 'COMFYUI_DIR', '--comfyui-dir')} is {path}, which {what}.",
            hint="Point it at the folder that holds ComfyUI's main.py.",
        )
    return Sourced(path.resolve(), src.source)


def _python(layers: _Layers, cli: CliOverrides, comfyui_dir: Path | None, environ: Mapping[str, str]) -> Sourced[str]:
    src = layers.get("COMFYUI_PYTHON", cli.python)
    if src is not None:
        text = str(src.value).strip()
        if not text:
            raise ComfyUINotFoundError(
                f"{_where(src, 'COMFYUI_PYTHON', '--python')} is empty.",
                hint="Give ComfyUI's interpreter (a path, or a command on PATH such as python3), or leave it out to find ComfyUI/.venv.",
            )
        if "/" not in text:
            # A bare name ("python3") is looked up on PATH, as a shell would.
            found = shutil.which(text, path=environ.get("PATH", os.defpath))
            if found is None:
                raise ComfyUINotFoundError(
                    f"{_where(src, 'COMFYUI_PYTHON', '--python')} is {text!r}, which is not a command on PATH.",
                    hint="Give the Python interpreter of ComfyUI's environment, e.g. ComfyUI/.venv/bin/python.",
                )
            return Sourced(found, src.source)
        path = Path(text).expanduser()
        if not path.is_file():
            raise ComfyUINotFoundError(
                f"{_where(src, 'COMFYUI_PYTHON', '--python')} is {path}, which does not exist.",
                hint="Give the Python interpreter of ComfyUI's environment, e.g. ComfyUI/.venv/bin/python.",
            )
        return Sourced(str(path), src.source)
    discovered = find_python(comfyui_dir, environ)
    if discovered is not None:
        return Sourced(str(discovered), "derived")
    # Not found: "default" marks it, and launching refuses it (launch.compose); other commands
    # (config, doctor, gpus) still work and say so.
    return Sourced(sys.executable, "default")
