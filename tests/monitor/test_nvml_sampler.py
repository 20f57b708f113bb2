"""The NVML sampler against the fake pynvml: init once, handles reused, N/A per field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from comfyrig.host.gpus.nvml import NvmlSession, NvmlUnavailable
from comfyrig.monitor.procinfo import ProcDetails
from comfyrig.monitor.sampler import (
    NoGpuSampler,
    NvmlSampler,
    SimulatedSampler,
    open_sampler,
)

from ..host import fake_pynvml as fake
from ..host.fake_pynvml import FakePynvml, h100s


class FakeProcInfo:
    def describe(self, pids: Any) -> dict[int, ProcDetails]:
        return {pid: ProcDetails(user="bob", command="python main.py", ports=(8188,)) for pid in pids}


def machine(count: int = 2) -> list[dict[str, Any]]:
    gpus = h100s(count)
    gpus[0]["processes"] = [{"pid": 100, "used_mib": 512}]
    return gpus


def sampler_on(nvml: FakePynvml) -> NvmlSampler:
    return NvmlSampler(nvml, procinfo=FakeProcInfo())  # type: ignore[arg-type]


def test_init_once_handles_reused() -> None:
    nvml = FakePynvml(machine())
    sampler = sampler_on(nvml)
    for tick in range(50):
        sampler.sample(tick)
    sampler.close()
    sampler.close()
    once = ("nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion")
    assert [nvml.calls[name] for name in once] == [1, 1, 1]
    assert [nvml.calls[name] for name in ("nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetUUID")] == [2, 2, 2]
    assert nvml.calls["nvmlDeviceGetMemoryInfo"] == 100 and nvml.refcount == 0


def test_fields_and_processes() -> None:
    sampler = sampler_on(FakePynvml(machine()))
    first, second = sampler.sample(0)
    assert first.name == "NVIDIA H100 80GB HBM3" and first.uuid == "GPU-00000000-1111-2222-3333-444444444444"
    assert (first.memory_used_mib, first.memory_total_mib) == (1024, 81559)
    assert (first.utilization_pct, first.memory_util_pct, first.temperature_c) == (97, 41, 61)
    assert (first.power_w, first.power_limit_w) == (612.345, 700.0)
    assert (first.sm_clock_mhz, first.mem_clock_mhz) == (1980, 2619)
    assert [(p.pid, p.memory_mib, p.user, p.ports) for p in first.processes] == [(100, 512, "bob", (8188,))]
    assert first.owner_ports == (8188,)
    assert second.processes == ()
    assert sampler.driver_version == "570.86.15" and sampler.problem is None


def test_same_samples_as_the_simulated_gpus_with_the_same_values() -> None:
    # The monitor's view and JSON were pinned with simulated GPUs; NVML must fill the same records.
    nvml = sampler_on(FakePynvml(h100s(1), strings="bytes")).sample(0)
    spec = {"driver_version": "570.86.15", "gpus": [{
        "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000000-1111-2222-3333-444444444444",
        "memory_total_mib": 81559, "memory_used_mib": 1024, "utilization_pct": 97, "memory_util_pct": 41,
        "temperature_c": 61, "power_w": 612.345, "power_limit_w": 700.0, "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
    }]}
    assert nvml == SimulatedSampler.from_spec(json.dumps(spec)).sample(0)


def test_unsupported_field_and_lost_gpu_are_na() -> None:
    gpus = machine()
    gpus[0]["power_mw"] = None  # a board without a power sensor
    gpus[0]["processes"] = [{"pid": 100, "used_mib": None}]  # NVML_VALUE_NOT_AVAILABLE
    nvml = FakePynvml(gpus)
    sampler = sampler_on(nvml)
    nvml.lose(1)  # falls off the bus after the sampler opened
    first, second = sampler.sample(0)
    assert first.power_w is None and first.power_limit_w == 700.0 and first.utilization_pct == 97
    assert [(p.pid, p.memory_mib) for p in first.processes] == [(100, None)]
    assert second.name == "NVIDIA H100 80GB HBM3"
    assert (second.memory_used_mib, second.utilization_pct, second.temperature_c, second.processes) == (None, None, None, ())


def test_a_gpu_lost_before_opening_keeps_its_row() -> None:
    nvml = FakePynvml(machine(3))
    nvml.lose(1)
    samples = sampler_on(nvml).sample(0)
    assert [(s.index, s.name, s.memory_used_mib) for s in samples] == [
        (0, "NVIDIA H100 80GB HBM3", 1024), (1, "N/A", None), (2, "NVIDIA H100 80GB HBM3", 1024)]


def test_no_driver_gives_a_no_gpu_sampler_with_the_reason() -> None:
    with pytest.raises(NvmlUnavailable, match="Driver Not Loaded"):
        NvmlSampler(FakePynvml(init_error=fake.NVML_ERROR_DRIVER_NOT_LOADED))
    sampler = open_sampler(None, nvml=FakePynvml(init_error=fake.NVML_ERROR_DRIVER_NOT_LOADED))
    assert isinstance(sampler, NoGpuSampler)
    assert sampler.sample(0) == ()
    assert sampler.problem is not None and "Driver Not Loaded" in sampler.problem


def test_zero_gpus_says_so() -> None:
    sampler = sampler_on(FakePynvml([]))
    assert sampler.sample(0) == ()
    assert sampler.problem == "the NVIDIA driver reports no GPU"


def test_samples_through_a_given_session() -> None:
    nvml = FakePynvml(machine())
    session = NvmlSession(nvml)
    sampler = NvmlSampler(session=session, procinfo=FakeProcInfo())  # type: ignore[arg-type]
    assert len(sampler.sample(0)) == 2
    sampler.close()
    assert (nvml.calls["nvmlInit"], nvml.refcount) == (1, 0)
