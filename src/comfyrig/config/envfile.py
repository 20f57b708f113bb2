"""Read a ``.env`` file as data, never as shell code.

The old launcher scripts ran ``source .env``, which executes whatever the file
holds. Here each line is parsed by python-dotenv's parser; ``$(...)`` stays
literal text. ``${VAR}`` is expanded like bash would: in unquoted and
double-quoted values, from earlier lines then the process environment, and
not inside single quotes (python-dotenv itself expands there too, which would
surprise anyone who wrote the file for bash). A line that cannot be parsed is
an error naming the file and line (python-dotenv only logs a warning).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files import MIB, read_text

__all__ = ["EnvFile", "read_env_file"]


@dataclass(frozen=True)
class EnvFile:
    """The variables of one .env file, with the line each came from."""

    path: Path
    values: Mapping[str, str]
    lines: Mapping[str, int]

    def source_of(self, key: str) -> str:
        return f".env:{self.lines[key]}"


def read_env_file(path: Path, environ: Mapping[str, str], *, what: str = "the .env file") -> EnvFile:
    """Parse ``path``; raises ConfigError for an unreadable file or line."""
    # python-dotenv is imported only when there is a file to read: its package
    # pulls in logging and tempfile, start-up time every command would pay.
    from dotenv.parser import parse_stream

    text = read_text(path, what, limit=4 * MIB)
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    consumed = 0  # newlines before this binding: python-dotenv's own line numbers skip blank lines
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = consumed + 1 + original[: len(original) - len(original.lstrip())].count("\n")
        consumed += original.count("\n")
        if binding.error:
            raise ConfigError(
                f"{path}, line {line}: cannot parse {original.strip()!r}.",
                hint="Each line must be NAME=value (optionally quoted, optionally after 'export'), "
                "a comment starting with '#', or blank.",
            )
        if binding.key is not None and binding.value is None:
            # bash's 'source' ignores a bare NAME too; here it is almost always a lost '=value'.
            raise ConfigError(
                f"{path}, line {line}: {binding.key} has no '=' and no value.",
                hint=f"Write {binding.key}=VALUE, or remove the line (or start it with '#').",
            )
        if binding.key is None or binding.value is None:
            continue  # comment or blank line
        value = binding.value
        if not _single_quoted(original):
            value = _expand(value, {**environ, **values})
        values[binding.key] = value
        lines[binding.key] = line
    return EnvFile(path=path, values=values, lines=lines)


def _single_quoted(original: str) -> bool:
    _, _, rest = original.partition("=")
    return rest.lstrip().startswith("'")


def _expand(value: str, scope: Mapping[str, str]) -> str:
    from dotenv.variables import parse_variables

    return "".join(atom.resolve(dict(scope)) for atom in parse_variables(value))
