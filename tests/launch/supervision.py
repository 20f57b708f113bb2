"""Seams for driving the Supervisor without processes: fake children, a fake clock, scripted probes."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyrig.comfy.multigpu import MultiGpuFinding
from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.launch.events import SupervisorEvent
from comfyrig.launch.plan import InstanceSpec, plan_launch
from comfyrig.launch.supervisor import Probes, Supervisor, SupervisorOptions

from ..conftest import inventory_of

STATS = {"system": {"comfyui_version": "0.3.76"}, "devices": [{"name": "cuda:0 fake", "vram_total": 2**30}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeChild:
    """A ComfyUI that never existed: it records signals and obeys the script."""

    pid: int
    on_line: Callable[[str], None]
    ignores_sigint: bool = False
    code: int | None = None
    signals: list[int] = field(default_factory=list)
    output_open: bool = False  # True: lines may still come after the exit
    sentinel_pid: int | None = None

    @property
    def pgid(self) -> int:
        return self.pid

    def poll(self) -> int | None:
        return self.code

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        if self.code is None:
            if sig == signal.SIGKILL:
                self.code = -signal.SIGKILL
            elif sig in (signal.SIGINT, signal.SIGTERM) and not self.ignores_sigint:
                self.code = 0
        return True

    def group_alive(self) -> bool:
        return self.code is None

    def output_done(self) -> bool:
        return self.code is not None and not self.output_open

    def say(self, line: str) -> None:
        self.on_line(line)

    def exit(self, code: int) -> None:
        self.code = code


class Spawner:
    """Hands out FakeChildren; ``fail`` makes the next spawn raise like a missing interpreter."""

    def __init__(self) -> None:
        self.children: list[FakeChild] = []
        self.calls: list[dict[str, Any]] = []
        self.fail = False
        self.ignores_sigint = False

    def __call__(self, argv: tuple[str, ...], env: Mapping[str, str], cwd: Path | None, on_line: Callable[[str], None],
                 log_path: Path | None, cpus: tuple[int, ...] | None) -> FakeChild:
        self.calls.append({"argv": argv, "env": dict(env), "log": log_path, "cpus": cpus})
        if self.fail:
            raise FileNotFoundError(2, "No such file or directory")
        child = FakeChild(pid=4000 + len(self.children), on_line=on_line, ignores_sigint=self.ignores_sigint)
        self.children.append(child)
        return child

    @property
    def last(self) -> FakeChild:
        return self.children[-1]


class Answers:
    """Scripted HTTP answers: ``up`` decides readiness, ``alive`` the liveness probe."""

    def __init__(self) -> None:
        self.up = False
        self.alive: int | None = 0
        self.finding: MultiGpuFinding | None = None
        self.asked: list[str] = []

    def probes(self, inspect: bool = False) -> Probes:
        def ready(url: str) -> Mapping[str, Any] | None:
            self.asked.append("ready")
            return STATS if self.up else None

        def alive(url: str) -> int | None:
            self.asked.append("alive")
            return self.alive if self.up else None

        def finding(url: str) -> MultiGpuFinding | None:
            return self.finding

        return Probes(ready=ready, alive=alive, inspect=finding if inspect else None)


def specs(tmp_path: Path, count: int = 1) -> tuple[InstanceSpec, ...]:
    settings = resolve_settings(CliOverrides(), {}, tmp_path)
    selection = select_gpus(GpuRequest("multi") if count > 1 else GpuRequest("single", ("0",)), inventory_of(max(count, 1)))
    return plan_launch(settings, selection, list(range(8188, 8188 + count)), workers=count > 1, log_dir=tmp_path).instances


class Rig:
    """A Supervisor with fake children, a fake clock, inline probes, and the events it reported."""

    def __init__(self, tmp_path: Path, *, count: int = 1, inspect: bool = False, deferred: bool = False,
                 sessions: Mapping[str, Path] | None = None, ignores_sigint: bool = False, spawn_fails: bool = False,
                 **options: Any) -> None:
        self.clock = Clock()
        self.spawner = Spawner()
        self.spawner.ignores_sigint = ignores_sigint
        self.spawner.fail = spawn_fails
        self.answers = Answers()
        self.events: list[SupervisorEvent] = []
        self.pending: list[Callable[[], None]] = []
        beside: Callable[[Callable[[], None]], None] = self.pending.append if deferred else (lambda fn: fn())
        self.supervisor = Supervisor(
            specs(tmp_path, count), {"PATH": "/bin"}, SupervisorOptions(**options),
            probes=self.answers.probes(inspect), reporter=self.events.append, sessions=sessions,
            spawner=self.spawner, clock=self.clock, beside=beside,
        )
        self.supervisor.start_all()

    def tick(self, seconds: float = 0.1, times: int = 1) -> None:
        for _ in range(times):
            self.clock.now += seconds
            self.supervisor.step(0)

    def until(self, condition: Callable[[], bool], *, seconds: float = 0.1, limit: int = 10_000) -> None:
        for _ in range(limit):
            if condition():
                return
            self.tick(seconds)
        raise AssertionError(f"never happened; events: {self.events}")

    def phase(self, index: int = 0) -> str:
        return self.supervisor.snapshot().workers[index].phase

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
