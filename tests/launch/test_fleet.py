"""The Fleet: registry records for every started process, whichever command started it."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.errors import PortInUseError
from comfyrig.launch.fleet import Fleet
from comfyrig.launch.plan import LaunchPlan, plan_launch
from comfyrig.launch.process import spawn
from comfyrig.launch.registry import state_dir
from comfyrig.launch.supervisor import SupervisorOptions

from ..conftest import inventory_of
from .supervision import Answers, Clock, Spawner


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def fleet_plan(tmp_path: Path, owner: str = "batch") -> LaunchPlan:
    settings = resolve_settings(CliOverrides(), {}, tmp_path)
    selection = select_gpus(GpuRequest("multi"), inventory_of(2))
    return plan_launch(settings, selection, free_ports(2), workers=True, log_dir=tmp_path / "logs", owner=owner)


def test_every_started_process_is_recorded_and_removed_when_it_exits(tmp_path: Path) -> None:
    environ = {"COMFYRIG_STATE_DIR": str(tmp_path / "state")}
    spawner, answers, clock = Spawner(), Answers(), Clock()
    plan = fleet_plan(tmp_path)
    fleet = Fleet(plan, environ, SupervisorOptions(), probes=answers.probes(), spawner=spawner, clock=clock,
                  beside=lambda fn: fn())
    fleet.supervisor.start_all()
    records = sorted(state_dir(environ).records(), key=lambda r: r.cuda_visible_devices)
    assert [(r.port, r.pid, r.owner, r.cuda_visible_devices) for r in records] == [
        (plan.instances[0].port, spawner.children[0].pid, "batch", "0"),
        (plan.instances[1].port, spawner.children[1].pid, "batch", "1"),
    ]
    assert records[0].log_file == str(tmp_path / "logs" / f"comfyrig-{plan.instances[0].port}.log")
    spawner.children[0].exit(1)
    clock.now += 1
    fleet.supervisor.step(0)
    assert [r.pid for r in state_dir(environ).records()] == [spawner.children[1].pid]


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    plan = fleet_plan(tmp_path)
    spawner = Spawner()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", plan.instances[1].port))
        holder.listen()
        fleet = Fleet(plan, {"COMFYRIG_STATE_DIR": str(tmp_path)}, SupervisorOptions(), probes=Answers().probes(),
                      spawner=spawner)
        with pytest.raises(PortInUseError, match=f"Port {plan.instances[1].port}"):
            fleet.run()
    assert spawner.children == []


@pytest.mark.e2e
def test_a_real_child_closes_its_log_file_when_its_output_ends(tmp_path: Path) -> None:
    lines: list[str] = []
    log = tmp_path / "comfyrig.log"
    child = spawn((sys.executable, "-c", "print('hello')"), dict(os.environ), tmp_path, lines.append, log)
    child.popen.wait(timeout=30)
    child.reader.join(timeout=30)
    assert child.output_done() and lines == ["hello"] and log.read_text() == "hello\n"
    open_files = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")}
    assert str(log) not in open_files


def test_records_are_json_a_person_can_read(tmp_path: Path) -> None:
    environ = {"COMFYRIG_STATE_DIR": str(tmp_path / "state")}
    fleet = Fleet(fleet_plan(tmp_path, owner="launch"), environ, SupervisorOptions(), probes=Answers().probes(),
                  spawner=Spawner())
    fleet.supervisor.start_all()
    path = next((tmp_path / "state" / "instances").glob("*.json"))
    data = json.loads(path.read_text())
    assert data["owner"] == "launch" and data["argv"][1] == "main.py"


def test_a_run_that_ends_before_its_first_tick_still_shows_its_last_state(tmp_path: Path) -> None:
    """Every instance failed to start: the supervisor's loop never ticked, and the snapshot that
    is_gone, a Ray worker's state and the exit report read stayed "starting" for good (a Ray
    worker with a wrong interpreter sat there without a word)."""

    def no_interpreter(*args: object, **kwargs: object) -> object:
        raise FileNotFoundError(2, "No such file or directory")

    plan = fleet_plan(tmp_path)
    fleet = Fleet(plan, {"COMFYRIG_STATE_DIR": str(tmp_path / "state")}, SupervisorOptions(), probes=Answers().probes(),
                  spawner=no_interpreter, clock=Clock(), beside=lambda fn: fn())
    fleet.start()
    assert fleet._thread is not None
    fleet._thread.join(10)
    name = plan.instances[0].name
    assert fleet.is_gone(name)
    assert "could not start" in fleet.why_gone(name) and "No such file" in fleet.why_gone(name)
