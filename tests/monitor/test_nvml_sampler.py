"""The NVML sampler against a fake pynvml module: init once, handles reused, N/A per field."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from comfyrig.host.gpus.nvml import NvmlUnavailable
from comfyrig.monitor.procinfo import ProcDetails
from comfyrig.monitor.sampler import NoGpuSampler, NvmlSampler, open_sampler


class NVMLError(Exception):
    pass


class FakeNvml:
    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, count: int = 2, fail_init: bool = False) -> None:
        self.count = count
        self.fail_init = fail_init
        self.calls: dict[str, int] = {}
        self.lost: set[int] = set()
        self.no_power = False

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def nvmlInit(self) -> None:
        self._call("init")
        if self.fail_init:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self._call("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.14"

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        self._call("handle")
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:08d}"

    def _check(self, h: int) -> None:
        if h in self.lost:
            raise NVMLError("GPU is lost")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        self._check(h)
        return SimpleNamespace(used=1024 * 2**20, total=81559 * 2**20)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        self._check(h)
        return SimpleNamespace(gpu=97, memory=41)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        self._check(h)
        return 61

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self._check(h)
        if self.no_power:
            raise NVMLError("Not Supported")
        return 612_345

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        self._check(h)
        return 700_000

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        self._check(h)
        return {1: 1980, 2: 2619}[clock]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        self._check(h)
        return [SimpleNamespace(pid=100 + h, usedGpuMemory=512 * 2**20)] if h == 0 else []

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        return []


class FakeProcInfo:
    def describe(self, pids: Any) -> dict[int, ProcDetails]:
        return {pid: ProcDetails(user="bob", command="python main.py", ports=(8188,)) for pid in pids}


def test_init_once_handles_reused() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml, procinfo=FakeProcInfo())  # type: ignore[arg-type]
    for tick in range(50):
        sampler.sample(tick)
    sampler.close()
    sampler.close()
    assert nvml.calls == {"init": 1, "handle": 2, "shutdown": 1}


def test_fields_and_processes() -> None:
    sampler = NvmlSampler(FakeNvml(), procinfo=FakeProcInfo())  # type: ignore[arg-type]
    first, second = sampler.sample(0)
    assert first.name == "NVIDIA H100 80GB HBM3" and first.uuid == "GPU-00000000"
    assert (first.memory_used_mib, first.memory_total_mib) == (1024, 81559)
    assert (first.utilization_pct, first.memory_util_pct, first.temperature_c) == (97, 41, 61)
    assert (first.power_w, first.power_limit_w) == (612.345, 700.0)
    assert (first.sm_clock_mhz, first.mem_clock_mhz) == (1980, 2619)
    assert [(p.pid, p.memory_mib, p.user, p.ports) for p in first.processes] == [(100, 512, "bob", (8188,))]
    assert first.owner_ports == (8188,)
    assert second.processes == ()
    assert sampler.driver_version == "550.54.14"


def test_unsupported_field_and_lost_gpu_are_na() -> None:
    nvml = FakeNvml()
    nvml.no_power = True
    nvml.lost = {1}
    first, second = NvmlSampler(nvml, procinfo=FakeProcInfo()).sample(0)  # type: ignore[arg-type]
    assert first.power_w is None and first.utilization_pct == 97
    assert second.name == "NVIDIA H100 80GB HBM3"
    assert (second.memory_used_mib, second.utilization_pct, second.temperature_c) == (None, None, None)


def test_no_driver_gives_a_no_gpu_sampler_with_the_reason() -> None:
    with pytest.raises(NvmlUnavailable, match="Driver Not Loaded"):
        NvmlSampler(FakeNvml(fail_init=True))
    sampler = open_sampler(None, nvml=FakeNvml(fail_init=True))
    assert isinstance(sampler, NoGpuSampler)
    assert sampler.sample(0) == ()
    assert sampler.problem is not None and "Driver Not Loaded" in sampler.problem


def test_zero_gpus_says_so() -> None:
    sampler = NvmlSampler(FakeNvml(count=0), procinfo=FakeProcInfo())  # type: ignore[arg-type]
    assert sampler.sample(0) == ()
    assert sampler.problem == "the NVIDIA driver reports no GPU"


def test_the_fake_speaks_real_pynvml() -> None:
    # The sampler is tested against FakeNvml; every name the fake offers must exist in the real module,
    # so a typo in the sampler cannot pass here and fail on a GPU machine.
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    offered = [name for name in vars(FakeNvml) if name.startswith(("nvml", "NVML"))]
    assert len(offered) > 15
    assert [name for name in offered if not hasattr(pynvml, name)] == []
