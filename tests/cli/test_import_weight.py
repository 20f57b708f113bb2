"""What each command line imports: start-up time is mostly imports.

The times themselves are measured by benchmarks/bench_cli.py, side by side
with comfy-cli; tests check which modules load, which does not depend on how
busy the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from comfyrig.cli.commands import COMMANDS

from ..conftest import Cli

pytestmark = pytest.mark.e2e  # starts real processes

# Loaded only by the commands that need them.
HEAVY = ("torch", "httpx", "websockets", "sqlite3", "asyncio", "ray", "comfyrig.batch", "comfyrig.monitor", "comfyrig.fit")
COMMAND_MODULES = tuple(sorted({f"comfyrig.cli.{module}" for module, _ in COMMANDS.values()}))

# Runs main() as the console script does and writes the loaded modules to a file.
PROBE = """
import sys
from comfyrig.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""


def imports_of(cli: Cli, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    listing = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(listing), *args],
        cwd=cli.cwd, env=cli.env, capture_output=True, text=True, timeout=60, check=False,
    )
    return result, set(listing.read_text().split())


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (or their submodules) are among ``modules``."""
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("args", [["--help"], ["-h", "gpus"], ["--version"]])
def test_root_help_and_version_import_no_command_typer_or_rich(cli: Cli, tmp_path: Path, args: list[str]) -> None:
    result, modules = imports_of(cli, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert loaded(modules, ("typer", "click", "rich", "dotenv", "comfyrig.config", "comfyrig.host", *HEAVY, *COMMAND_MODULES)) == []


def test_an_unknown_command_imports_no_command_module(cli: Cli, tmp_path: Path) -> None:
    result, modules = imports_of(cli, tmp_path, "bogus")
    assert result.returncode == 2 and result.stderr.startswith("comfyrig: error: Unknown command 'bogus'.")
    assert loaded(modules, ("typer", *HEAVY, *COMMAND_MODULES)) == []


def test_gpus_json_imports_its_module_only_and_no_rich(cli: Cli, tmp_path: Path) -> None:
    cli.gpus(2)
    result, modules = imports_of(cli, tmp_path, "gpus", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["cuda_visible_devices"] == "0,1"
    assert loaded(modules, ("rich", "dotenv", *HEAVY)) == []
    assert loaded(modules, COMMAND_MODULES) == ["comfyrig.cli.gpus_cmd"]


def test_config_json_imports_no_rich(cli: Cli, tmp_path: Path) -> None:
    result, modules = imports_of(cli, tmp_path, "config", "--json")
    assert result.returncode == 0 and "settings" in json.loads(result.stdout)
    assert loaded(modules, ("rich", *HEAVY)) == []
    assert loaded(modules, COMMAND_MODULES) == ["comfyrig.cli.config_cmd"]


def test_a_commands_help_imports_its_module_only(cli: Cli, tmp_path: Path) -> None:
    result, modules = imports_of(cli, tmp_path, "gpus", "--help")
    assert result.returncode == 0 and "comfyrig gpus" in result.stdout and "--torch-check" in result.stdout
    assert loaded(modules, COMMAND_MODULES) == ["comfyrig.cli.gpus_cmd"]
    assert loaded(modules, HEAVY) == []


def test_each_module_registers_exactly_its_rows_of_the_table() -> None:
    code = (
        "import importlib, json\n"
        "from comfyrig.cli.app import app\n"
        "from comfyrig.cli.commands import COMMANDS\n"
        "seen = {}\n"
        "for module in dict.fromkeys(m for m, _ in COMMANDS.values()):\n"
        "    before = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}\n"
        "    importlib.import_module('comfyrig.cli.' + module)\n"
        "    after = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}\n"
        "    seen[module] = sorted(after - before)\n"
        "print(json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    expected: dict[str, list[str]] = {}
    for name, (module, _) in COMMANDS.items():
        expected.setdefault(module, []).append(name)
    assert json.loads(out) == {module: sorted(names) for module, names in expected.items()}
