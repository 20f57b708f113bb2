"""``comfyrig install`` and ``comfyrig nodes add``: parse -> options -> plan -> run -> check."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from ..config.modes import GpuRequest, select_gpus
from ..errors import ComfyUINotFoundError, ConfigError, GitNotFoundError, RemoteError
from ..host.gpus.inventory import Inventory
from ..host.gpus.probe import probe_inventory
from ..host.gpus.torchcheck import TorchReport, judge_torch, run_torch_check
from ..install.nodes import NODE_PACKS, PackName
from ..install.plan import COMFYUI_REPO, InstallOptions, InstallPlan, needs_latest_tag, plan_install
from ..install.state import inspect_state, venv_python
from ..install.steps import Installer, InstallResult, latest_release_tag
from ..ui.console import make_console
from ..ui.gpus_view import torch_table
from ..ui.install_view import RichInstallEvents, render_install_plan
from ..ui.panel import gpu_config_panel
from . import options as o
from .app import add_group, command
from .report import print_json

__all__: list[str] = []

PACKS_PANEL = "Node packs"
TORCH_PANEL = "PyTorch"

Repo = Annotated[str, typer.Option("--repo", help="ComfyUI's git URL (or a local path / file:// URL).")]
Ref = Annotated[str | None, typer.Option("--ref", metavar="TAG|COMMIT", help="What to check out (default: the newest release tag). Moves an existing checkout.", show_default=False)]
TorchIndex = Annotated[str | None, typer.Option("--torch-index", metavar="URL|DIR", help="PyTorch wheel index URL (pip --index-url; file:// too), or a folder of wheels (pip --no-index --find-links).", rich_help_panel=TORCH_PANEL, show_default=False)]
Cuda = Annotated[str | None, typer.Option("--cuda", metavar="X.Y", help="Take PyTorch's CUDA X.Y build instead of the one chosen for the driver.", rich_help_panel=TORCH_PANEL, show_default=False)]
ReinstallTorch = Annotated[bool, typer.Option("--reinstall-torch", help="Uninstall and reinstall torch even if it looks right.", rich_help_panel=TORCH_PANEL)]
Wheels = Annotated[Path | None, typer.Option("--wheels", metavar="DIR", help="Offline: every pip install uses --no-index --find-links DIR.", show_default=False)]
VenvPython = Annotated[str | None, typer.Option("--python", help="The interpreter that creates DIR/.venv (default: the one running comfyrig).", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Install into a non-empty folder that is not ComfyUI (keeps its files), or move a node pack to the known-good commit.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan (repo, ref, torch index and why, steps) and change nothing.")]


def _packs(with_multigpu: bool, with_manager: bool) -> tuple[PackName, ...]:
    chosen: list[PackName] = []
    if with_multigpu:
        chosen.append("multigpu")
    if with_manager:
        chosen.append("manager")
    return tuple(chosen)


def _existing_dir(path: Path | None, flag: str) -> Path | None:
    if path is None:
        return None
    resolved = path.expanduser().absolute()
    if not resolved.is_dir():
        raise ConfigError(f"{flag} {path}: no such folder.")
    return resolved


def _torch_index(value: str | None) -> str | None:
    """A URL (http, https, file) is an index and stays as it is; a path is a
    folder of wheels and must exist."""
    if value is None or "://" in value:
        return value
    path = Path(value).expanduser().absolute()
    if not path.is_dir():
        raise ConfigError(f"--torch-index {value}: not a URL, and no such folder.")
    return str(path)


def _interpreter(value: str | None, environ: dict[str, str]) -> str:
    import sys

    if value is None:
        return sys.executable
    found = shutil.which(value, path=environ.get("PATH", os.defpath)) if os.sep not in value else value
    if not found or not Path(found).is_file():
        raise ConfigError(f"--python {value}: no such interpreter.")
    return str(Path(found).absolute())


def _resolve_ref(options: InstallOptions, state_needs: bool, environ: dict[str, str], dry_run: bool) -> InstallOptions:
    if not state_needs:
        return options
    try:
        return replace(options, latest_tag=latest_release_tag(options.repo, environ))
    except (RemoteError, GitNotFoundError) as exc:
        if not dry_run:
            raise
        return replace(options, latest_problem=exc.message)


def _plan(inventory: Inventory, options: InstallOptions, environ: dict[str, str], dry_run: bool) -> tuple[InstallOptions, InstallPlan]:
    state = inspect_state(options.target, environ, options.packs)
    options = _resolve_ref(options, needs_latest_tag(state, options), environ, dry_run)
    return options, plan_install(inventory, state, options)


def _execute(inventory: Inventory, options: InstallOptions, environ: dict[str, str], console: Console) -> InstallResult:
    with RichInstallEvents(console) as events:
        return Installer(inventory, options, environ, events=events).run()


def _show_and_run(
    inventory: Inventory, options: InstallOptions, environ: dict[str, str], console: Console, *, dry_run: bool, json_out: bool
) -> InstallResult | None:
    """Plan, show the plan (or print it as JSON), and run it unless --dry-run (then None)."""
    options, plan = _plan(inventory, options, environ, dry_run)
    if dry_run:
        if json_out:
            print_json({"plan": plan.to_json()})
        else:
            console.print(render_install_plan(plan))
        return None
    if not json_out:
        console.print(render_install_plan(plan))
    return _execute(inventory, options, environ, console)


@command("install", help="Install ComfyUI into DIR (default ./ComfyUI) with the PyTorch build this machine's driver runs; "
         "re-running verifies and repairs.")
def install_cmd(
    directory: Annotated[Path, typer.Argument(help="Where ComfyUI goes.", show_default="./ComfyUI")] = Path("ComfyUI"),
    repo: Repo = COMFYUI_REPO,
    ref: Ref = None,
    torch_index: TorchIndex = None,
    cuda: Cuda = None,
    reinstall_torch: ReinstallTorch = False,
    wheels: Wheels = None,
    python: VenvPython = None,
    with_multigpu: Annotated[bool, typer.Option("--with-multigpu", help="Also clone ComfyUI-MultiGPU at a commit known to work with this ComfyUI.", rich_help_panel=PACKS_PANEL)] = False,
    with_manager: Annotated[bool, typer.Option("--with-manager", help="Also clone ComfyUI-Manager.", rich_help_panel=PACKS_PANEL)] = False,
    multigpu_ref: Annotated[str | None, typer.Option("--multigpu-ref", metavar="REF", help="ComfyUI-MultiGPU commit/tag instead of the table's.", rich_help_panel=PACKS_PANEL, show_default=False)] = None,
    multigpu_repo: Annotated[str | None, typer.Option("--multigpu-repo", metavar="URL", help="ComfyUI-MultiGPU's git URL.", rich_help_panel=PACKS_PANEL, show_default=False)] = None,
    manager_ref: Annotated[str | None, typer.Option("--manager-ref", metavar="REF", help="ComfyUI-Manager ref (default: its default branch).", rich_help_panel=PACKS_PANEL, show_default=False)] = None,
    manager_repo: Annotated[str | None, typer.Option("--manager-repo", metavar="URL", help="ComfyUI-Manager's git URL.", rich_help_panel=PACKS_PANEL, show_default=False)] = None,
    force: Force = False,
    no_env_file: Annotated[bool, typer.Option("--no-env-file", help="Do not write DIR/.env.")] = False,
    dry_run: DryRun = False,
    json_out: o.JsonOut = False,
) -> int:
    environ = dict(os.environ)  # the CLI edge: the one place the environment is read
    if cuda and torch_index:
        raise ConfigError("Give --cuda or --torch-index, not both.")
    options = InstallOptions(
        target=directory.expanduser().absolute(),
        repo=repo,
        ref=ref,
        python=_interpreter(python, environ),
        cuda=cuda,
        torch_index=_torch_index(torch_index),
        wheels=_existing_dir(wheels, "--wheels"),
        packs=_packs(with_multigpu or multigpu_ref is not None, with_manager or manager_ref is not None),
        pack_refs={k: v for k, v in (("multigpu", multigpu_ref), ("manager", manager_ref)) if v},  # type: ignore[misc]
        pack_repos={k: v for k, v in (("multigpu", multigpu_repo), ("manager", manager_repo)) if v},  # type: ignore[misc]
        force=force,
        reinstall_torch=reinstall_torch,
        write_env=not no_env_file,
    )
    inventory = probe_inventory(environ.get("COMFYRIG_FAKE_GPUS"))
    console = make_console(environ, stderr=json_out)
    result = _show_and_run(inventory, options, environ, console, dry_run=dry_run, json_out=json_out)
    if result is None:
        return 0
    selection = select_gpus(GpuRequest("auto"), inventory)
    raw = run_torch_check(
        str(result.plan.venv_python),
        {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": selection.cuda_visible_devices},
        environ,
    )
    report = judge_torch(str(result.plan.venv_python), raw, len(selection.gpus), len(inventory.gpus))
    report = _companions_import(report, result.plan, environ)
    if json_out:
        print_json(_result_json(result, report))
    else:
        console.print(gpu_config_panel(selection))
        console.print(torch_table(report.to_json()))
        _next_steps(console, result, report)
    return 0 if report.ok else 1


def _companions_import(report: TorchReport, plan: InstallPlan, environ: dict[str, str]) -> TorchReport:
    """torchvision/torchaudio built for another torch import fine as metadata and
    fail in ComfyUI's first import ("operator torchvision::nms does not exist"),
    which happens when pip mixes indexes (a find-links or extra index in pip.conf)."""
    names = [n for n in plan.torch_packages if n != "torch"]
    if not names or not report.ok:
        return report
    code = "import torch\n" + "".join(f"import {n}\n" for n in names)
    try:
        done = subprocess.run([str(plan.venv_python), "-c", code], env=environ, capture_output=True, text=True,
                              timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return replace(report, ok=False, problems=(*report.problems, f"importing {', '.join(names)} failed: {exc}"))
    if done.returncode == 0:
        return report
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    problem = (f"{' or '.join(names)} does not import with this torch ({last}): they must come from the same index "
               "as torch (check pip.conf for find-links or extra-index-url).")
    return replace(report, ok=False, problems=(*report.problems, problem))


def _result_json(result: InstallResult, report: TorchReport | None) -> dict[str, Any]:
    return {
        "ok": report is None or report.ok,
        "plan": result.plan.to_json(),
        "ran": [{"key": r.key, "title": r.title, "argv": list(r.argv), "seconds": round(r.seconds, 2)} for r in result.ran],
        "torch": None if report is None else report.to_json(),
    }


def _next_steps(console: Console, result: InstallResult, report: TorchReport) -> None:
    target = result.plan.target
    ran = len(result.ran)
    summary = f"{ran} step{'s' if ran != 1 else ''} run" if ran else "Nothing to do: everything was already in place"
    console.print(Text(f"{summary}. ComfyUI {result.state.comfyui_version or ''} is in {target}.", style="bold"))
    if report.ok:
        console.print(Text(f"Start it: comfyrig launch --comfyui-dir {target}", style="bold green"))
    else:
        console.print(Text(
            "The install finished, but torch in the new environment does not see the GPUs as expected (see above). "
            f"Fix it with: comfyrig install {target} --reinstall-torch (add --cuda X.Y to pick another build).",
            style="bold red",
        ))


nodes_app = typer.Typer(no_args_is_help=True, add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})
add_group("nodes", nodes_app, help="Add node packs (ComfyUI-MultiGPU, ComfyUI-Manager) to a ComfyUI checkout.")


@command("add", group=nodes_app, help="Clone a node pack into custom_nodes/ at a ref known to work with this ComfyUI "
         "and install its requirements: 'multigpu' (ComfyUI-MultiGPU) or 'manager' (ComfyUI-Manager).")
def nodes_add_cmd(
    pack: Annotated[str, typer.Argument(help="multigpu or manager.")],
    comfyui_dir: o.ComfyDir = None,
    python: o.Python = None,
    env_file: o.EnvFile = None,
    ref: Annotated[str | None, typer.Option("--ref", metavar="REF", help="Commit or tag instead of the compatibility table's.", show_default=False)] = None,
    repo: Annotated[str | None, typer.Option("--repo", metavar="URL", help="The pack's git URL.", show_default=False)] = None,
    wheels: Wheels = None,
    force: Annotated[bool, typer.Option("--force", help="Move an existing checkout of the pack to the known-good commit.")] = False,
    dry_run: DryRun = False,
    json_out: o.JsonOut = False,
) -> int:
    name = pack.strip().lower().removeprefix("comfyui-")
    if name not in NODE_PACKS:
        raise ConfigError(f"Unknown node pack {pack!r}; choose one of: {', '.join(NODE_PACKS)}.")
    settings = o.settings_from(o.overrides(comfyui_dir=comfyui_dir, python=python, env_file=env_file))
    target = settings.comfyui_dir.value
    if target is None:
        raise ComfyUINotFoundError(
            "No ComfyUI found: none was given and the current folder has no main.py.",
            hint="Pass --comfyui-dir DIR (or set COMFYUI_DIR), or install one first with 'comfyrig install'.",
        )
    chosen: PackName = name
    options = InstallOptions(
        target=Path(target),
        scope="nodes",
        packs=(chosen,),
        pack_refs={chosen: ref} if ref else {},
        pack_repos={chosen: repo} if repo else {},
        wheels=_existing_dir(wheels, "--wheels"),
        force=force,
        # comfyrig's own interpreter is no place for a node pack's requirements
        venv_python=Path(settings.python.value) if settings.python.source != "default" else venv_python(Path(target)),
    )
    environ = dict(settings.environ)
    inventory = probe_inventory(settings.fake_gpus)
    console = make_console(environ, stderr=json_out)
    result = _show_and_run(inventory, options, environ, console, dry_run=dry_run, json_out=json_out)
    if result is None:
        return 0
    if json_out:
        print_json(_result_json(result, None))
        return 0
    for p in result.plan.packs:
        where = p.folder.relative_to(result.plan.target)
        console.print(Text(f"{NODE_PACKS[p.name].title} {p.ref.label} is in {where}; restart ComfyUI to load it.", style="bold green"))
    for warning in result.plan.warnings:
        console.print(Text(f"⚠ {warning}", style="bold yellow"))
    return 0
