"""Settings: layered sources with provenance, .env reading, GPU modes."""

from .envfile import EnvFile, read_env_file
from .modes import GpuRequest, Selection, select_gpus
from .settings import CliOverrides, Settings, Sourced, resolve_settings

__all__ = [
    "CliOverrides",
    "EnvFile",
    "GpuRequest",
    "Selection",
    "Settings",
    "Sourced",
    "read_env_file",
    "resolve_settings",
    "select_gpus",
]
