"""Pure install planning: (inventory, what is on disk, options) -> the steps.

``plan_install`` has no side effects. Each step carries the exact argv it
would run (no shell), why, and whether it is already satisfied by the state
inspected from disk; ``comfyrig install --dry-run`` prints exactly this. The
executor re-inspects and re-plans after every step, so a step whose command
depends on an earlier one (the MultiGPU commit depends on the ComfyUI version
checked out) is planned as ``pending`` until then.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, NotComfyUIError
from ..host.gpus.inventory import Inventory
from .envtemplate import render_env
from .nodes import NODE_PACKS, PackName, RefChoice, choose_pack_ref
from .state import TORCH_FAMILY, UNDECLARED_REQUIREMENTS, ExistingState, venv_python
from .torch_choice import TorchChoice, choose_torch, index_tag

__all__ = ["COMFYUI_REPO", "InstallOptions", "InstallPlan", "PackPlan", "Step", "needs_latest_tag", "plan_install"]

COMFYUI_REPO = "https://github.com/comfyanonymous/ComfyUI"

Scope = Literal["install", "nodes"]


@dataclass(frozen=True)
class InstallOptions:
    """Everything ``comfyrig install`` / ``nodes add`` was asked, resolved once.

    ``latest_tag`` is the newest release tag of ``repo`` (``git ls-remote``),
    looked up by the caller only when ``ref`` is None and a checkout is needed;
    ``latest_problem`` says why it could not be.
    """

    target: Path
    repo: str = COMFYUI_REPO
    ref: str | None = None
    latest_tag: str | None = None
    latest_problem: str | None = None
    python: str = sys.executable  # the interpreter that creates the venv
    cuda: str | None = None
    torch_index: str | None = None
    wheels: Path | None = None  # offline: every pip install uses --no-index --find-links here
    packs: tuple[PackName, ...] = ()
    pack_refs: Mapping[PackName, str] = field(default_factory=dict)
    pack_repos: Mapping[PackName, str] = field(default_factory=dict)
    force: bool = False
    reinstall_torch: bool = False
    write_env: bool = True
    scope: Scope = "install"
    venv_python: Path | None = None  # "nodes" scope: ComfyUI's interpreter (settings.python)


@dataclass(frozen=True)
class Step:
    """One thing to make true. ``argv`` is empty for a step that writes a file."""

    key: str
    title: str
    why: str
    check: str  # what "already done" means, as a sentence
    satisfied: bool
    argv: tuple[str, ...] = ()
    write: tuple[Path, str] | None = None
    pending: str | None = None  # the command is known only after earlier steps
    verify: bool = True  # re-check after running; off where a later step checks the effect
    retry: str | None = None  # extra advice when it fails

    @property
    def needs_git(self) -> bool:
        return bool(self.argv) and self.argv[0] == "git"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "why": self.why,
            "check": self.check,
            "satisfied": self.satisfied,
            "argv": list(self.argv),
            "writes": str(self.write[0]) if self.write else None,
            "pending": self.pending,
        }


@dataclass(frozen=True)
class PackPlan:
    name: PackName
    url: str
    folder: Path
    ref: RefChoice


@dataclass(frozen=True)
class InstallPlan:
    target: Path
    scope: Scope
    repo: str
    ref: str | None
    ref_source: str
    comfyui_version: str | None
    torch: TorchChoice | None
    torch_packages: tuple[str, ...]
    venv_python: Path
    packs: tuple[PackPlan, ...]
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()

    @property
    def todo(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if not s.satisfied)

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "scope": self.scope,
            "repo": self.repo,
            "ref": self.ref,
            "ref_source": self.ref_source,
            "comfyui_version": self.comfyui_version,
            "torch": None if self.torch is None else {**self.torch.to_json(), "packages": list(self.torch_packages)},
            "venv_python": str(self.venv_python),
            "node_packs": [
                {"name": p.name, "url": p.url, "folder": str(p.folder), "ref": p.ref.ref, "label": p.ref.label,
                 "reason": p.ref.reason, "pending": p.ref.pending}
                for p in self.packs
            ],
            "steps": [s.to_json() for s in self.steps],
            "warnings": list(self.warnings),
        }


def needs_latest_tag(state: ExistingState, options: InstallOptions) -> bool:
    """Whether the caller must look up the newest release tag before planning."""
    return options.scope == "install" and options.ref is None and not state.is_comfyui


def _pip(python: Path, *args: str) -> tuple[str, ...]:
    return (str(python), "-m", "pip", *args)


def _wheel_args(options: InstallOptions) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(options.wheels)) if options.wheels else ()


def plan_install(inventory: Inventory, state: ExistingState, options: InstallOptions) -> InstallPlan:
    """The steps that make ``options.target`` a working ComfyUI; raises
    NotComfyUIError, ConfigError or DriverTooOldError for what cannot work."""
    warnings: list[str] = []
    steps: list[Step] = []
    target = options.target
    if options.scope == "install":
        ref, ref_source = _checkout_steps(state, options, steps, warnings)
        python = venv_python(target)
        torch, family = _torch(inventory, state, options, warnings)
        _venv_steps(state, options, python, steps)
        _torch_steps(state, options, python, torch, family, steps)
        _repair_step(state, options, python, steps)
        _requirements_step(state, options, python, steps)
    else:
        if not state.is_comfyui:
            raise NotComfyUIError(f"{target} is not a ComfyUI checkout (no main.py with comfyui_version.py or comfy/).")
        ref, ref_source = None, "kept"
        python = options.venv_python or venv_python(target)
        torch, family = None, ()
    packs = tuple(_pack_plan(name, state, options) for name in options.packs)
    for pack in packs:
        _pack_steps(pack, state, options, python, steps, warnings)
    if options.scope == "install" and options.write_env:
        path = target / ".env"
        steps.append(
            Step(
                key="env-file",
                title="Write .env",
                why="the launcher's settings file, every key commented out, with the GPUs found here",
                check=".env exists (an existing one is never overwritten)",
                satisfied=state.env_file,
                write=(path, render_env(inventory, state.supported_flags, options.packs)),
            )
        )
    return InstallPlan(
        target=target,
        scope=options.scope,
        repo=options.repo,
        ref=ref,
        ref_source=ref_source,
        comfyui_version=state.comfyui_version,
        torch=torch,
        torch_packages=family,
        venv_python=python,
        packs=packs,
        steps=tuple(steps),
        warnings=tuple(warnings),
    )


def _checkout_steps(
    state: ExistingState, options: InstallOptions, steps: list[Step], warnings: list[str]
) -> tuple[str | None, str]:
    target, repo = options.target, options.repo
    git = ("git", "-C", str(target))
    ref = options.ref or options.latest_tag
    source = "--ref" if options.ref else "the newest release tag (git ls-remote)"
    pending = None if ref else f"the newest release tag of {repo} ({options.latest_problem or 'not looked up yet'})"
    shown = ref or "<newest release tag>"
    if options.latest_problem and not ref and not state.is_comfyui:
        warnings.append(f"The newest release tag could not be looked up: {options.latest_problem}")
    at_ref = state.is_comfyui and state.git is not None and ref is not None and state.git.at(ref)
    checkout = Step(
        key="checkout",
        title=f"Check out {shown}",
        why=(f"{shown}: given with --ref" if options.ref else
             f"{shown}: the newest release tag (git ls-remote), not whatever the default branch holds today"),
        check=f"ComfyUI's files are there and HEAD is {shown}",
        satisfied=at_ref,
        argv=(*git, "checkout", "--detach", shown),
        pending=pending,
        retry="If git says local changes would be overwritten, commit or stash them in that folder first.",
    )
    fetch = Step(
        key="fetch",
        title="Fetch ComfyUI's history and tags",
        why=f"{shown} may be newer than what this checkout has",
        check=f"HEAD is already {shown}",
        satisfied=at_ref,
        argv=(*git, "fetch", "--tags", "origin"),
        verify=False,
    )
    if state.exists and not state.is_dir:
        raise NotComfyUIError(f"{target} is a file, not a folder; choose another install folder.")
    if state.is_comfyui:
        origin = state.git.origin if state.git else None
        if repo != COMFYUI_REPO and origin and origin.rstrip("/") != repo.rstrip("/"):
            warnings.append(f"{target} was cloned from {origin}; --repo {repo} applies to new clones only.")
        if options.ref is None:
            version = state.comfyui_version or "(version unknown)"
            head = f" at {state.git.head[:12]}" if state.git and state.git.head else ""
            steps.append(
                Step(
                    key="checkout",
                    title="ComfyUI checkout",
                    why="an existing checkout is verified and repaired, never moved unless --ref asks",
                    check=f"ComfyUI {version}{head} is here (kept; --ref TAG moves it)",
                    satisfied=True,
                )
            )
            return (state.git.head if state.git else None), "kept: already checked out"
        if state.git is None:
            raise ConfigError(
                f"{target} holds ComfyUI but is not a git checkout, so it cannot be moved to {options.ref}.",
                hint="Leave out --ref to keep it as it is, or install into a new folder.",
            )
        steps += [fetch, checkout]
        return ref, source
    if not state.exists or state.empty:
        steps.append(
            Step(
                key="clone",
                title=f"Clone {repo}",
                why="no ComfyUI here yet (--no-checkout: files come with the exact ref in the next step)",
                check=f"{target} is a git repository",
                satisfied=False,
                argv=("git", "clone", "--no-checkout", repo, str(target)),
                retry=f"Check that {repo} is reachable (network, proxy, URL).",
            )
        )
        steps.append(checkout)
        return ref, source
    if state.git is None and not options.force:
        raise NotComfyUIError(
            f"{target} exists and is not a ComfyUI checkout (it holds {_listing(state.entries)}); "
            "comfyrig will not install into it.",
            hint="Choose another folder (comfyrig install DIR), or pass --force to add ComfyUI to it: existing files are "
            "kept, and git stops rather than overwrite any of them.",
        )
    if state.git is None:
        warnings.append(f"--force: {target} is not empty; ComfyUI is checked out around the files already there.")
        steps.append(
            Step(
                key="git-init",
                title="Make the folder a git repository",
                why="--force into a non-empty folder: git clone refuses those, git init does not",
                check=f"{target}/.git exists",
                satisfied=False,
                argv=(*git, "init", "--quiet"),
            )
        )
    if state.git is None or state.git.origin is None:
        steps.append(
            Step(
                key="remote",
                title="Add the remote",
                why=f"origin is {repo}",
                check="the repository has a remote named origin",
                satisfied=False,
                argv=(*git, "remote", "add", "origin", repo),
            )
        )
    if state.git is None or state.git.head is None:
        steps.append(replace(fetch, satisfied=False))
    steps.append(checkout)
    return ref, source


def _listing(names: tuple[str, ...]) -> str:
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def _torch(
    inventory: Inventory, state: ExistingState, options: InstallOptions, warnings: list[str]
) -> tuple[TorchChoice, tuple[str, ...]]:
    if options.wheels and not options.torch_index:
        chosen = choose_torch(inventory, cuda=options.cuda)
        torch = TorchChoice(
            "custom", str(options.wheels), index_tag(str(options.wheels)),
            f"--wheels: torch from {options.wheels} (for this machine comfyrig would take {chosen.tag}: {chosen.url}).",
            local=True,
        )
    else:
        torch = choose_torch(inventory, cuda=options.cuda, index_url=options.torch_index)
    warnings.extend(torch.warnings)
    if state.torch_family:
        family = state.torch_family
    elif state.torch_family == ():
        family = ("torch",)
    else:
        family = TORCH_FAMILY
    return torch, family


def _venv_steps(state: ExistingState, options: InstallOptions, python: Path, steps: list[Step]) -> None:
    venv = state.venv
    path = str(options.target / ".venv")
    if not venv.exists:
        argv: tuple[str, ...] = (options.python, "-m", "venv", path)
        why = "ComfyUI's own environment, so its packages never touch the system Python"
    elif not venv.runs:
        argv = (options.python, "-m", "venv", "--clear", path)
        why = f"the venv is broken ({venv.problem}): rebuilt in place; only .venv is cleared"
    elif not venv.pip:
        argv = (str(python), "-m", "ensurepip", "--upgrade")
        why = "the venv has no working pip (an interrupted install?)"
    else:
        argv = (options.python, "-m", "venv", path)
        why = "ComfyUI's own environment"
    steps.append(
        Step(
            key="venv",
            title="Create the virtual environment" if not venv.exists else (
                "Virtual environment" if venv.runs and venv.pip else "Repair the virtual environment"),
            why=why,
            check=".venv's python starts and has pip",
            satisfied=venv.runs and venv.pip,
            argv=argv,
            retry="If the disk is full, free some space first (torch alone needs several GB).",
        )
    )


def _torch_steps(
    state: ExistingState, options: InstallOptions, python: Path, torch: TorchChoice,
    family: tuple[str, ...], steps: list[Step],
) -> None:
    venv = state.venv
    expected = torch.tag
    installed = venv.runs and venv.torch_version is not None
    wrong = installed and expected is not None and venv.torch_build is not None and venv.torch_build != expected
    if installed and (wrong or options.reinstall_torch):
        why = (
            f"torch {venv.torch_version} is a {venv.torch_build} build, but this machine needs {expected}"
            if wrong else "--reinstall-torch"
        )
        steps.append(
            Step(
                key="torch-uninstall",
                title="Remove the mismatched torch",
                why=why,
                check=f"no torch, or a {expected} build",
                satisfied=False,
                argv=_pip(python, "uninstall", "--yes", *family),
                verify=False,
            )
        )
    broken = [n for n in family if n in venv.broken]
    source = ("--no-index", "--find-links", torch.url) if torch.local else ("--index-url", torch.url)
    if broken:
        # pip believes a half-written torch is installed and cannot uninstall it without RECORD
        source = ("--ignore-installed", *source)
    extra = ("--find-links", str(options.wheels)) if options.wheels and options.torch_index else ()
    build = f"a {expected} build" if expected else "installed"
    steps.append(
        Step(
            key="torch",
            title=f"Install {', '.join(family)} ({expected or 'custom index'})",
            why=torch.reason,
            check=f"torch is {build}",
            satisfied=installed and not wrong and venv.family_complete(family) and not broken,
            argv=_pip(python, "install", *family, *source, *extra),
            retry="If pip ran out of disk space, free some (torch needs several GB) and run again.",
        )
    )


def _repair_step(state: ExistingState, options: InstallOptions, python: Path, steps: list[Step]) -> None:
    broken = {n: v for n, v in state.venv.broken.items() if n not in TORCH_FAMILY}
    if not broken or not state.venv.runs:
        return
    pins = [f"{name}=={version}" for name, version in sorted(broken.items())]
    steps.append(
        Step(
            key="repair-packages",
            title="Reinstall half-installed packages",
            why=f"{', '.join(pins)} {'was' if len(pins) == 1 else 'were'} not completely written (a full disk or Ctrl-C "
            "during pip?); pip would call them installed",
            check="every package in the venv was completely installed",
            satisfied=False,
            argv=_pip(python, "install", "--no-deps", "--ignore-installed", *pins, *_wheel_args(options)),
        )
    )


def _requirements_step(state: ExistingState, options: InstallOptions, python: Path, steps: list[Step]) -> None:
    venv = state.venv
    req = options.target / "requirements.txt"
    undeclared = str(UNDECLARED_REQUIREMENTS)
    unmet = venv.unmet.get("requirements.txt", ()) + venv.unmet.get(undeclared, ())
    satisfied = (
        state.is_comfyui and state.has_requirements and venv.runs
        and "requirements.txt" in venv.unmet and undeclared in venv.unmet and not unmet
    )
    if state.is_comfyui and not state.has_requirements:
        check = "ComfyUI has no requirements.txt: nothing to install"
        satisfied = True
    else:
        check = "every line of requirements.txt is satisfied in the venv"
    why = "ComfyUI's own dependencies; torch is already there, so pip keeps it"
    if unmet:
        why += f" (missing or wrong: {', '.join(unmet[:5])}{'...' if len(unmet) > 5 else ''})"
    steps.append(
        Step(
            key="requirements",
            title="Install ComfyUI's requirements.txt",
            why=why,
            check=check,
            satisfied=satisfied,
            # Plus what ComfyUI imports without declaring it (requests).
            argv=_pip(python, "install", "-r", str(req), "-r", undeclared, *_wheel_args(options)),
            pending=None if state.is_comfyui else "after the checkout",
            retry="If pip ran out of disk space, free some and run again; what is installed stays.",
        )
    )


def _pack_plan(name: PackName, state: ExistingState, options: InstallOptions) -> PackPlan:
    pack = NODE_PACKS[name]
    present = state.present_files if state.is_comfyui else None
    version = state.comfyui_version
    if version is None and not state.is_comfyui:
        tag = options.ref or options.latest_tag
        version = tag if tag and tag.lstrip("v")[:1].isdigit() else None
    choice = choose_pack_ref(name, version, present, override=options.pack_refs.get(name))
    return PackPlan(name, options.pack_repos.get(name, pack.url), options.target / "custom_nodes" / pack.folder, choice)


def _pack_steps(
    pack: PackPlan, state: ExistingState, options: InstallOptions, python: Path, steps: list[Step], warnings: list[str]
) -> None:
    info = NODE_PACKS[pack.name]
    have = state.packs.get(pack.name)
    folder = pack.folder
    git = ("git", "-C", str(folder))
    ref = pack.ref.ref
    key = f"{pack.name}:"
    pending = "after ComfyUI's checkout (the commit depends on its version)" if pack.ref.pending else None
    shown = ref or "<ref for that ComfyUI>"
    at_ref = have is not None and have.loadable and have.git is not None and (ref is None or have.git.at(ref))
    exists = have is not None and have.exists and not have.empty
    kept = False  # left at a commit comfyrig did not choose
    if not exists:
        if ref is None and not pack.ref.pending:
            steps.append(
                Step(
                    key=key + "clone",
                    title=f"Clone {info.title}",
                    why=pack.ref.reason,
                    check=f"custom_nodes/{info.folder} is a checkout with __init__.py",
                    satisfied=False,
                    argv=("git", "clone", pack.url, str(folder)),
                )
            )
        else:
            steps.append(
                Step(
                    key=key + "clone",
                    title=f"Clone {info.title}",
                    why="a node pack ComfyUI loads from custom_nodes/",
                    check=f"custom_nodes/{info.folder} is a git repository",
                    satisfied=False,
                    argv=("git", "clone", "--no-checkout", pack.url, str(folder)),
                )
            )
            steps.append(_pack_checkout(key, info.title, shown, pack, git, False, pending))
    elif have is not None and have.git is None:
        kept = True
        warnings.append(f"custom_nodes/{info.folder} exists but is not a git checkout: left as it is.")
    elif have is not None and not have.loadable and have.git is not None:
        steps.append(_pack_checkout(key, info.title, shown, pack, git, False, pending, default=ref is None))
    elif ref is not None and not at_ref:
        explicit = pack.name in options.pack_refs
        if options.force or explicit:
            steps.append(
                Step(key=key + "fetch", title=f"Fetch {info.title}", why=f"{ref} may not be here yet",
                     check=f"HEAD is {ref}", satisfied=False, argv=(*git, "fetch", "--tags", "origin"), verify=False)
            )
            steps.append(_pack_checkout(key, info.title, shown, pack, git, False, pending))
        else:
            kept = True
            head = have.git.head[:12] if have and have.git and have.git.head else "?"
            warnings.append(
                f"custom_nodes/{info.folder} is at {head}, not at {pack.ref.label} ({ref[:12]}), the commit known to work "
                f"with ComfyUI {state.comfyui_version}: kept as it is; pass --force to switch it."
            )
    else:
        steps.append(_pack_checkout(key, info.title, shown, pack, git, True, None))
    undeclared = pack.ref.undeclared
    if undeclared is not None and not kept:
        unmet = state.venv.unmet.get(str(undeclared))
        steps.append(
            Step(
                key=key + "undeclared",
                title=f"Install what {info.title} {pack.ref.label} imports without declaring it",
                why=f"without {', '.join(_requirement_names(undeclared))} ComfyUI reports IMPORT FAILED for the pack "
                    "(it has no requirements.txt)",
                check=f"every line of {undeclared.name} is satisfied in the venv",
                satisfied=state.venv.runs and unmet is not None and not unmet,
                argv=_pip(python, "install", "-r", str(undeclared), *_wheel_args(options)),
            )
        )
    if exists and have is not None and not have.has_requirements:
        return
    unmet = state.venv.unmet.get(f"custom_nodes/{info.folder}/requirements.txt", ())
    has_req = have is not None and have.has_requirements
    steps.append(
        Step(
            key=key + "requirements",
            title=f"Install {info.title}'s requirements.txt",
            why="its Python dependencies, into ComfyUI's environment",
            check="every line of its requirements.txt is satisfied",
            satisfied=has_req and state.venv.runs and not unmet and f"custom_nodes/{info.folder}/requirements.txt" in state.venv.unmet,
            argv=_pip(python, "install", "-r", str(folder / "requirements.txt"), *_wheel_args(options)),
            pending=None if has_req else "after the clone, if it has a requirements.txt",
        )
    )


def _requirement_names(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return [path.name]
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _pack_checkout(
    key: str, title: str, shown: str, pack: PackPlan, git: tuple[str, ...], satisfied: bool,
    pending: str | None, *, default: bool = False,
) -> Step:
    if default:
        argv: tuple[str, ...] = (*git, "checkout")
        why = "finish an interrupted clone on its default branch"
    else:
        argv = (*git, "checkout", "--detach", shown)
        why = f"{pack.ref.label}: {pack.ref.reason}"
    return Step(
        key=key + "checkout",
        title=f"Check out {title} {pack.ref.label}",
        why=why,
        check=f"its files are there and HEAD is {pack.ref.label}",
        satisfied=satisfied,
        argv=argv,
        pending=pending,
    )
