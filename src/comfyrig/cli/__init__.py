"""Thin Typer commands: parse -> settings -> call a service -> exit code."""

import sys

from .app import app, main

__all__ = ["app", "main", "run"]


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
