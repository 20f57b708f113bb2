"""The composition root: every command's plan comes from compose(settings, facts, request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.errors import SelectionError
from comfyrig.host.gpus.simulated import parse_simulated
from comfyrig.launch.compose import HostFacts, LaunchRequest, PortPicker, compose

from ..conftest import fake_gpus


class Ports(PortPicker):
    """Counts up without binding; records what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []
        self.next_ephemeral = 40000

    def free(self, base: int, count: int, host: str) -> list[int]:
        self.asked.append(("free", base, count))
        return list(range(base, base + count))

    def ephemeral(self, host: str) -> int:
        self.next_ephemeral += 1
        return self.next_ephemeral


def facts(gpus: int, *, cpus: int = 8, affinity: bool = True) -> HostFacts:
    raw = fake_gpus(gpus)
    if affinity:
        for item in raw:
            item["cpu_affinity"] = list(range(cpus))
    return HostFacts(inventory=parse_simulated(raw), cpus=frozenset(range(cpus)))


def settings(tmp_path: Path, environ: dict[str, str] | None = None, **cli: object):  # type: ignore[no-untyped-def]
    return resolve_settings(CliOverrides(**cli), environ or {}, tmp_path)  # type: ignore[arg-type]


def test_single_instance_keeps_the_configured_port_and_is_not_placed(tmp_path: Path) -> None:
    ports = Ports()
    plan = compose(settings(tmp_path, port="8190", comfyui_dir=None), facts(2), LaunchRequest(), ports=ports)
    (inst,) = plan.instances
    assert inst.port == 8190 and ports.asked == [] and inst.placement is None and plan.owner == "launch"


def test_fleet_gets_free_ports_from_the_base_a_placement_each_and_log_files(tmp_path: Path) -> None:
    ports = Ports()
    logs = tmp_path / "logs"
    plan = compose(settings(tmp_path), facts(2), LaunchRequest(workers=True, log_dir=logs, owner="batch"), ports=ports)
    assert ports.asked == [("free", 8188, 2)]
    assert [(i.port, i.cuda_visible_devices, i.log_file) for i in plan.instances] == [
        (8188, "0", logs / "comfyrig-8188.log"), (8189, "1", logs / "comfyrig-8189.log")]
    first, second = (i.placement for i in plan.instances)
    assert first is not None and second is not None and not set(first.cpus) & set(second.cpus)
    assert plan.owner == "batch"


def test_port_auto_counts_from_8188(tmp_path: Path) -> None:
    ports = Ports()
    compose(settings(tmp_path, port="auto"), facts(1), LaunchRequest(), ports=ports)
    assert ports.asked == [("free", 8188, 1)]


def test_a_ray_actor_composes_from_the_gpu_ray_assigned(tmp_path: Path) -> None:
    # Ray hands the actor CUDA_VISIBLE_DEVICES=1: the settings read it, NVML names the GPU,
    # and the placement is GPU 1's share of the node's plan (never overlapping GPU 0's).
    request = LaunchRequest(workers=True, ports="ephemeral", share_node=True, owner="ray")
    node = facts(2)
    one = compose(settings(tmp_path, {"CUDA_VISIBLE_DEVICES": "1"}), node, request, ports=Ports())
    zero = compose(settings(tmp_path, {"CUDA_VISIBLE_DEVICES": "0"}), node, request, ports=Ports())
    (inst,) = one.instances
    assert inst.cuda_visible_devices == "1" and inst.gpu_indices == (1,) and inst.port > 40000
    assert one.selection.gpus[0].name == "NVIDIA GeForce RTX 3090"  # the real GPU, not a made-up one
    assert inst.placement is not None and zero.instances[0].placement is not None
    assert not set(inst.placement.cpus) & set(zero.instances[0].placement.cpus)


def test_a_ray_gpu_the_node_does_not_have_is_refused(tmp_path: Path) -> None:
    request = LaunchRequest(workers=True, ports="ephemeral", share_node=True, owner="ray")
    with pytest.raises(SelectionError, match="no GPU 3"):
        compose(settings(tmp_path, {"CUDA_VISIBLE_DEVICES": "3"}), facts(2), request, ports=Ports())


def test_cpu_mode_fleet_is_one_instance(tmp_path: Path) -> None:
    plan = compose(settings(tmp_path, cpu=True), facts(2), LaunchRequest(workers=True), ports=Ports())
    assert len(plan.instances) == 1 and plan.instances[0].cuda_visible_devices == "" and not plan.workers


def test_explicit_thread_budget_places_a_single_instance(tmp_path: Path) -> None:
    plan = compose(settings(tmp_path), facts(1), LaunchRequest(threads_per_worker=2), ports=Ports())
    placed = plan.instances[0].placement
    assert placed is not None and placed.threads == 2
    assert plan.instances[0].env["OMP_NUM_THREADS"] == "2"
