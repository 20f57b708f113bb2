"""Scanning a .env leniently, so every bad line can be named at once (comfyrig itself stops at the first)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from ..files import MIB, read_text

__all__ = ["EnvScan", "scan_env_file"]


@dataclass(frozen=True)
class EnvScan:
    path: Path
    keys: dict[str, int]  # name -> line of its last assignment
    errors: list[tuple[int, str]]  # (line, text) of lines that do not parse


def scan_env_file(path: Path) -> EnvScan:
    """Parse every line of ``path``; raises ConfigError when it cannot be read (the one reader)."""
    text = read_text(path, "the .env file", limit=4 * MIB)
    keys: dict[str, int] = {}
    errors: list[tuple[int, str]] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error or (binding.key is not None and binding.value is None):  # a bare NAME: comfyrig refuses it
            errors.append((line, binding.original.string.strip()))
        elif binding.key is not None:
            keys[binding.key] = line
    return EnvScan(path=path, keys=keys, errors=errors)
