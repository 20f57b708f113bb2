"""The executor, against an in-memory machine: each command changes the
simulated disk the way the real one would, and faults are injected per step."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from comfyrig.errors import GitNotFoundError, InstallInterrupted, RemoteError, StepFailedError
from comfyrig.host.gpus.simulated import parse_simulated
from comfyrig.install.plan import InstallOptions, Step
from comfyrig.install.state import UNDECLARED_REQUIREMENTS, ExistingState, GitState, VenvState
from comfyrig.install.steps import (
    Installer,
    InstallEvents,
    RunResult,
    latest_release_tag,
    pick_release_tag,
    run_command,
)

from .builders import fake_comfyui_repo

GPUS = parse_simulated({"driver_version": "570.86", "cuda_driver_version": "12.8",
                        "gpus": [{"name": "RTX 3090", "memory_total_mib": 24576}]})
FULL = {"torch": "2.9.0+cu128", "torchvision": "0.24.0", "torchaudio": "2.9.0"}

UNDECLARED = str(UNDECLARED_REQUIREMENTS)


class World:
    """A fake disk for one install folder; ``runner`` applies each command's effect."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.state = ExistingState.fresh(target)
        self.ran: list[tuple[str, ...]] = []
        self.fail: dict[str, RunResult] = {}
        self.interrupt: set[str] = set()
        self.no_effect: set[str] = set()

    def inspect(self, target: Path, environ: Mapping[str, str]) -> ExistingState:
        return replace(self.state, env_file=(target / ".env").exists())

    def runner(self, argv: Sequence[str], *, env: Mapping[str, str], on_line: Callable[[str], None]) -> RunResult:
        argv = tuple(argv)
        self.ran.append(argv)
        text = " ".join(argv)
        on_line(f"running {argv[-1]}")
        for needle in self.interrupt:
            if needle in text:
                raise KeyboardInterrupt
        for needle, result in self.fail.items():
            if needle in text:
                return result
        if any(needle in text for needle in self.no_effect):
            return RunResult(0, ())
        s = self.state
        if argv[:2] == ("git", "clone"):
            self.target.mkdir(exist_ok=True)
            s = replace(s, exists=True, empty=False, git=GitState(head="1" * 40, refs_at_head=("master",), origin=argv[-2]))
        elif "checkout" in argv:
            s = replace(s, is_comfyui=True, comfyui_version="0.3.76", has_requirements=True, torch_family=("torch",),
                        git=GitState(head="1" * 40, refs_at_head=(argv[-1],)))
        elif "venv" in argv:
            s = replace(s, venv=VenvState(self.target / ".venv", exists=True, runs=True, pip=True,
                                          unmet={"requirements.txt": ("torch", "tinypkg"), UNDECLARED: ("requests",)}))
        elif "install" in argv and "torch" in argv:
            s = replace(s, venv=replace(s.venv, torch_version="2.9.0+cu128", torch_build="cu128", family=FULL,
                                        unmet={"requirements.txt": ("tinypkg",), UNDECLARED: ("requests",)}))
        elif "install" in argv and "-r" in argv:
            s = replace(s, venv=replace(s.venv, unmet={"requirements.txt": (), UNDECLARED: ()}))
        self.state = s
        return RunResult(0, (f"done {argv[-1]}",))


class Recorder(InstallEvents):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def started(self, step: Step, number: int, total: int) -> None:
        self.events.append(("start", f"{number}/{total} {step.key}"))

    def line(self, step: Step, text: str) -> None:
        self.events.append(("line", text))

    def finished(self, step: Step, seconds: float) -> None:
        self.events.append(("done", step.key))

    def failed(self, step: Step, result: RunResult) -> None:
        self.events.append(("failed", "\n".join(result.output)))


def installer(world: World, events: InstallEvents | None = None, **kw: Any) -> Installer:
    options = InstallOptions(target=world.target, latest_tag="v0.3.76", python="/usr/bin/python3", **kw)
    return Installer(GPUS, options, {"PATH": "/usr/bin"}, runner=world.runner, inspect=world.inspect, events=events)


def test_converges_step_by_step(tmp_path: Path) -> None:
    world, rec = World(tmp_path / "ComfyUI"), Recorder()
    result = installer(world, rec).run()
    assert [r.key for r in result.ran] == ["clone", "checkout", "venv", "torch", "requirements", "env-file"]
    assert [e[1] for e in rec.events if e[0] == "start"][:2] == ["1/6 clone", "2/6 checkout"]
    assert ("line", "running v0.3.76") in rec.events
    assert result.plan.todo == () and (world.target / ".env").read_text().startswith("# ComfyUI environment")
    assert world.ran[3][-2:] == ("--index-url", "https://download.pytorch.org/whl/cu128")
    assert installer(world).run().ran == ()  # a second run has nothing to do


def test_disk_full_stops_and_the_next_run_repairs(tmp_path: Path) -> None:
    world, rec = World(tmp_path / "ComfyUI"), Recorder()
    world.fail["pip install torch"] = RunResult(1, ("Collecting torch", ("ERROR: Could not install packages due to an "
                                                                  "OSError: [Errno 28] No space left on device")))
    with pytest.raises(StepFailedError) as caught:
        installer(world, rec).run()
    message = str(caught.value)
    assert "Install torch" in message and "No space left on device" in message and "disk is full" in message
    assert "run the same command again" in message and caught.value.exit_code == 1
    assert rec.events[-1][0] == "failed" and "Errno 28" in rec.events[-1][1]
    del world.fail["pip install torch"]
    before = len(world.ran)
    result = installer(world).run()
    assert [r.key for r in result.ran] == ["torch", "requirements", "env-file"]
    assert not any(a[:2] == ("git", "clone") or "venv" in a for a in world.ran[before:])


def test_ctrl_c_is_reported_and_resumable(tmp_path: Path) -> None:
    world = World(tmp_path / "ComfyUI")
    world.interrupt.add(" -r ")
    with pytest.raises(InstallInterrupted) as caught:
        installer(world).run()
    assert caught.value.exit_code == 130 and "Install ComfyUI's requirements.txt" in str(caught.value)
    world.interrupt.clear()
    assert [r.key for r in installer(world).run().ran] == ["requirements", "env-file"]


def test_a_step_that_changes_nothing_is_caught(tmp_path: Path) -> None:
    world = World(tmp_path / "ComfyUI")
    world.no_effect.add(" -r ")
    with pytest.raises(StepFailedError, match="ran without error, but its check still fails"):
        installer(world).run()


def test_no_git_stops_before_running_anything(tmp_path: Path) -> None:
    world = World(tmp_path / "ComfyUI")
    world.state = replace(world.state, git_available=False)
    with pytest.raises(GitNotFoundError, match="apt-get install git"):
        installer(world).run()
    assert world.ran == []


def test_existing_env_file_is_kept(tmp_path: Path) -> None:
    world = World(tmp_path / "ComfyUI")
    world.target.mkdir()
    (world.target / ".env").write_text("COMFYUI_PORT=9000\n")
    result = installer(world).run()
    assert "env-file" not in [r.key for r in result.ran]
    assert (world.target / ".env").read_text() == "COMFYUI_PORT=9000\n"


def test_run_command_streams_and_keeps_the_tail() -> None:
    lines: list[str] = []
    script = "import sys\nfor i in range(100): print(i)\nprint('oops', file=sys.stderr)\nsys.exit(3)"
    result = run_command([sys.executable, "-c", script], env={"PYTHONUNBUFFERED": "1"}, on_line=lines.append)
    assert result.returncode == 3 and lines[0] == "0" and result.output[-1] == "oops" and len(result.output) == 40
    missing = run_command(["/no/such/program"], env={}, on_line=lines.append)
    assert missing.returncode == 127 and "not found" in missing.output[0]


def test_release_tags_sort_as_versions() -> None:
    out = "a\trefs/tags/v0.3.9\nb\trefs/tags/v0.3.76\nc\trefs/tags/v0.3.76^{}\nd\trefs/tags/latest\ne\trefs/tags/v0.4.0-rc1\n"
    assert pick_release_tag(out, "x") == "v0.3.76"
    with pytest.raises(RemoteError, match="no release tags"):
        pick_release_tag("a\trefs/tags/nightly\n", "x")


def test_latest_release_tag_from_a_local_repository(tmp_path: Path) -> None:
    repo = fake_comfyui_repo(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert latest_release_tag(f"file://{repo}", env) == "v0.3.76"
    with pytest.raises(RemoteError) as caught:
        latest_release_tag(f"file://{tmp_path}/missing.git", env)
    assert f"{tmp_path}/missing.git" in str(caught.value) and "git ls-remote said" in str(caught.value)
    with pytest.raises(GitNotFoundError):
        latest_release_tag(f"file://{repo}", {"PATH": str(tmp_path)})
