"""What is already on disk: the facts the install planner decides from.

This is the impure half of ``comfyrig install``: it reads files, asks git
about checkouts, and asks the venv's own interpreter which distributions it
has (without importing torch: that takes seconds and may touch CUDA). Every
re-run starts here, which is what makes an interrupted or damaged install
repairable instead of something to start over.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..comfy.checkout import comfyui_version, supported_flags
from .nodes import NODE_PACKS, PackName, needed_files, undeclared_files
from .torch_choice import tag_of_cuda

__all__ = ["ExistingState", "GitState", "PackState", "VenvState", "inspect_state", "is_comfyui_tree", "venv_python"]

TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
USER_PATHS = ("models", "custom_nodes", "user", "output", "input", ".env")


@dataclass(frozen=True)
class GitState:
    head: str | None  # the commit checked out, None in a repository without commits
    refs_at_head: tuple[str, ...] = ()  # tags and branches pointing at it ("v0.3.76", "origin/master")
    origin: str | None = None

    def at(self, ref: str) -> bool:
        """Whether HEAD is ``ref``: a tag or branch at HEAD, or a prefix of its SHA."""
        if self.head is None:
            return False
        if ref in self.refs_at_head or f"origin/{ref}" in self.refs_at_head:
            return True
        return len(ref) >= 7 and self.head.startswith(ref.lower())


@dataclass(frozen=True)
class PackState:
    folder: Path
    exists: bool
    empty: bool = True  # absent, or a folder with nothing in it
    git: GitState | None = None  # None when absent or not a git checkout
    loadable: bool = False  # has an __init__.py, as ComfyUI needs to import it
    has_requirements: bool = False


@dataclass(frozen=True)
class VenvState:
    path: Path
    exists: bool
    runs: bool = False
    problem: str | None = None  # why the interpreter does not start
    python_version: str | None = None
    pip: bool = False
    torch_version: str | None = None  # None: not installed
    torch_build: str | None = None  # "cpu", "cu128"; None when not installed or unknown
    family: Mapping[str, str | None] = field(default_factory=dict)  # torch, torchvision, torchaudio -> version
    # Distributions whose files were never completely written (no RECORD: pip
    # writes it last), e.g. after a full disk or Ctrl-C mid-install: name -> version.
    broken: Mapping[str, str] = field(default_factory=dict)
    unmet: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # requirements file -> lines not satisfied
    unchecked: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # lines that could not be evaluated

    @property
    def python(self) -> Path:
        return venv_python(self.path.parent, self.path.name)

    def family_complete(self, names: tuple[str, ...]) -> bool:
        return all(self.family.get(n) for n in names)


@dataclass(frozen=True)
class ExistingState:
    """A snapshot of the install folder; the planner's only view of the disk."""

    target: Path
    exists: bool
    empty: bool
    is_comfyui: bool
    git: GitState | None
    venv: VenvState
    comfyui_version: str | None = None
    present_files: frozenset[str] = frozenset()
    torch_family: tuple[str, ...] | None = None  # what requirements.txt names of torch/torchvision/torchaudio
    has_requirements: bool = False
    env_file: bool = False
    supported_flags: frozenset[str] | None = None
    user_paths: tuple[str, ...] = ()
    entries: tuple[str, ...] = ()  # the folder's top-level names, sorted
    packs: Mapping[PackName, PackState] = field(default_factory=dict)
    git_available: bool = True
    is_dir: bool = True  # False when the target is a file

    @classmethod
    def fresh(cls, target: Path, *, git_available: bool = True) -> ExistingState:
        """The state of a folder that does not exist yet (for tests and plans)."""
        return cls(
            target=target,
            exists=False,
            empty=True,
            is_comfyui=False,
            git=None,
            venv=VenvState(target / ".venv", exists=False),
            git_available=git_available,
        )


def venv_python(target: Path, name: str = ".venv") -> Path:
    return target / name / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def is_comfyui_tree(path: Path) -> bool:
    """main.py plus either comfyui_version.py or the comfy package."""
    return (path / "main.py").is_file() and ((path / "comfyui_version.py").is_file() or (path / "comfy").is_dir())


def _git(args: list[str], cwd: Path, environ: Mapping[str, str]) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, env={**environ, "GIT_TERMINAL_PROMPT": "0"},
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _git_state(path: Path, environ: Mapping[str, str], git_available: bool) -> GitState | None:
    if not (path / ".git").exists() or not git_available:
        return None
    head = _git(["rev-parse", "--verify", "--quiet", "HEAD"], path, environ)
    refs = _git(["for-each-ref", "--points-at", "HEAD", "--format=%(refname:short)"], path, environ) if head else ""
    origin = _git(["config", "--get", "remote.origin.url"], path, environ)
    return GitState(head=head or None, refs_at_head=tuple((refs or "").split()), origin=origin or None)


# Runs in the venv's interpreter. Reads metadata only: importing torch takes
# seconds and may initialise CUDA. pip's vendored `packaging` evaluates the
# requirement lines the way pip itself will.
_PROBE = r"""
import json, re, sys
from importlib import metadata as md
out = {"python": sys.version.split()[0], "pip": False, "torch_version": None, "torch_cuda": "?", "unmet": {}, "unchecked": {}, "family": {}}
for name in ("torch", "torchvision", "torchaudio"):
    try:
        out["family"][name] = md.version(name)
    except md.PackageNotFoundError:
        out["family"][name] = None
out["broken"] = {}
for dist in md.distributions():
    try:
        complete = dist.read_text("RECORD") is not None
    except OSError:
        complete = False
    if not complete and dist.metadata["Name"]:
        out["broken"][dist.metadata["Name"].lower()] = dist.version
try:
    from pip._vendor.packaging.requirements import Requirement
    out["pip"] = True
except Exception:
    Requirement = None
try:
    dist = md.distribution("torch")
    out["torch_version"] = dist.version
    try:
        text = open(dist.locate_file("torch/version.py"), encoding="utf-8").read()
        m = re.search(r"^cuda\b[^=\n]*=\s*(None|'([^']*)'|\"([^\"]*)\")", text, re.M)
        if m:
            out["torch_cuda"] = None if m.group(1) == "None" else (m.group(2) or m.group(3))
    except OSError:
        pass
except md.PackageNotFoundError:
    pass
for path in sys.argv[1:]:
    unmet, unchecked = [], []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for raw in lines:
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if Requirement is None or line.startswith("-") or "://" in line:
            unchecked.append(line)
            continue
        try:
            req = Requirement(line)
        except Exception:
            unchecked.append(line)
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            unmet.append(line)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            unmet.append(line)
    out["unmet"][path] = unmet
    out["unchecked"][path] = unchecked
print("COMFYRIG_VENV " + json.dumps(out))
"""


def _venv_state(target: Path, requirement_files: list[Path], environ: Mapping[str, str]) -> VenvState:
    path = target / ".venv"
    python = venv_python(target)
    if not path.exists():
        return VenvState(path, exists=False)
    if not python.exists():
        return VenvState(path, exists=True, problem=f"{python} is missing")
    env = {k: v for k, v in environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        result = subprocess.run(
            [str(python), "-c", _PROBE, *(str(f) for f in requirement_files)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return VenvState(path, exists=True, problem=f"{python} does not start ({exc})")
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("COMFYRIG_VENV "):
            data = json.loads(line.removeprefix("COMFYRIG_VENV "))
            break
    else:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return VenvState(path, exists=True, problem=f"{python} does not start ({tail[0]})")
    torch_cuda = data["torch_cuda"]
    build = None
    if data["torch_version"]:
        local = data["torch_version"].partition("+")[2]
        if torch_cuda != "?":
            build = tag_of_cuda(torch_cuda)
        elif local == "cpu" or local.startswith("cu"):
            build = local
    rel = {str(f): _rel(f, target) for f in requirement_files}
    return VenvState(
        path,
        exists=True,
        runs=True,
        python_version=data["python"],
        pip=bool(data["pip"]),
        torch_version=data["torch_version"],
        torch_build=build,
        family=dict(data["family"]),
        broken=dict(data["broken"]),
        unmet={rel[k]: tuple(v) for k, v in data["unmet"].items()},
        unchecked={rel[k]: tuple(v) for k, v in data["unchecked"].items()},
    )


def _rel(path: Path, target: Path) -> str:
    try:
        return str(path.relative_to(target))
    except ValueError:
        return str(path)


def _torch_family(requirements: Path) -> tuple[str, ...] | None:
    try:
        text = requirements.read_text(encoding="utf-8")
    except OSError:
        return None
    names = set()
    for raw in text.splitlines():
        line = raw.split("#")[0].strip().lower()
        for name in TORCH_FAMILY:
            if line == name or (line.startswith(name) and line[len(name)] in "<>=!~[; "):
                names.add(name)
    return tuple(n for n in TORCH_FAMILY if n in names)


# What ComfyUI imports at start without declaring it (see the file's comments).
UNDECLARED_REQUIREMENTS = Path(__file__).with_name("undeclared-requirements.txt")


def inspect_state(target: Path, environ: Mapping[str, str], packs: tuple[PackName, ...] = ("multigpu", "manager")) -> ExistingState:
    """Look at ``target`` (absolute) and its venv; never changes anything."""
    git_available = shutil.which("git", path=environ.get("PATH", os.defpath)) is not None
    if not target.exists():
        return ExistingState.fresh(target, git_available=git_available)
    entries = list(target.iterdir()) if target.is_dir() else [target]
    comfy = target.is_dir() and is_comfyui_tree(target)
    pack_states: dict[PackName, PackState] = {}
    req_files: list[Path] = []
    if (target / "requirements.txt").is_file():
        req_files.append(target / "requirements.txt")
    if (target / "main.py").is_file():
        req_files.append(UNDECLARED_REQUIREMENTS)
    for name in packs:
        folder = target / "custom_nodes" / NODE_PACKS[name].folder
        has_req = (folder / "requirements.txt").is_file()
        if has_req:
            req_files.append(folder / "requirements.txt")
        req_files.extend(undeclared_files(name))
        pack_states[name] = PackState(
            folder=folder,
            exists=folder.exists(),
            empty=not folder.is_dir() or not any(folder.iterdir()),
            git=_git_state(folder, environ, git_available) if folder.is_dir() else None,
            loadable=(folder / "__init__.py").is_file(),
            has_requirements=has_req,
        )
    return ExistingState(
        target=target,
        exists=True,
        empty=not entries,
        is_comfyui=comfy,
        git=_git_state(target, environ, git_available) if target.is_dir() else None,
        venv=_venv_state(target, req_files, environ),
        comfyui_version=comfyui_version(target),
        present_files=frozenset(f for f in needed_files() if (target / f).is_file()),
        torch_family=_torch_family(target / "requirements.txt"),
        has_requirements=(target / "requirements.txt").is_file(),
        env_file=(target / ".env").exists(),
        supported_flags=supported_flags(target),
        user_paths=tuple(p for p in USER_PATHS if (target / p).exists()),
        entries=tuple(sorted(p.name for p in entries)),
        packs=pack_states,
        git_available=git_available,
        is_dir=target.is_dir(),
    )
