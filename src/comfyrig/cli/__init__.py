"""Thin Typer commands: parse -> settings -> call a service -> exit code.

Importing this package imports neither Typer nor a command: see entry.py.
"""

from .entry import main, run

__all__ = ["main", "run"]
