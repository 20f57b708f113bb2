"""The NVML session and the NVML inventory, against a fake pynvml driven by plain data."""

from __future__ import annotations

import ctypes
import inspect
import os
from pathlib import Path
from typing import Any

import pytest

from comfyrig.host.gpus.inventory import Inventory
from comfyrig.host.gpus.nvml import (
    NvmlProcess,
    NvmlSession,
    NvmlUnavailable,
    probe_nvml,
)
from comfyrig.host.gpus.probe import probe_inventory
from comfyrig.host.gpus.smi import SmiUnavailable

from . import fake_pynvml as fake
from .fake_pynvml import FakePynvml, h100s


def _no_smi() -> Inventory:
    raise SmiUnavailable("nvidia-smi is not on PATH")


# The fake against the real module ------------------------------------------------------------

def test_the_fake_speaks_real_pynvml() -> None:
    # Everything is tested against the fake; each name, parameter list, constant, error class
    # and struct field it offers must be the real module's, so a typo in the session cannot
    # pass here and fail on a GPU machine.
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    offered = [name for name in vars(FakePynvml) if name.startswith(("nvml", "NVML"))]
    assert len(offered) > 35
    assert [name for name in offered if not hasattr(pynvml, name)] == []
    for name in offered:
        ours, real = getattr(FakePynvml, name), getattr(pynvml, name)
        if name.startswith("nvml"):
            params = list(inspect.signature(ours).parameters)[1:]  # without self
            assert params == list(inspect.signature(real).parameters), name
        elif name.startswith("NVMLError"):
            assert ours.__name__ == real.__name__
            if ours is not fake.NVMLError:
                code = ours(0).value
                assert real(0).value == code and str(ours(0)) == str(real(0)), name
        elif isinstance(ours, int):
            assert ours == real, name
    assert FakePynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value == pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
    structs = {
        fake.c_nvmlMemory_t: pynvml.c_nvmlMemory_t,
        fake.c_nvmlUtilization_t: pynvml.c_nvmlUtilization_t,
        fake.nvmlPciInfo_t: pynvml.nvmlPciInfo_t,
        fake.nvmlFriendlyObject: pynvml.c_nvmlProcessInfo_t,
    }
    for ours, real in structs.items():
        assert list(ours.__dataclass_fields__) == [f[0] for f in real._fields_], ours.__name__


def test_the_fake_raises_like_nvml() -> None:
    nvml = FakePynvml(h100s(1, power_mw=None))
    with pytest.raises(fake.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()  # before nvmlInit
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nvml.NVMLError_NotSupported, match="Not Supported"):
        nvml.nvmlDeviceGetPowerUsage(handle)
    nvml.lose(0)
    with pytest.raises(nvml.NVMLError, match="GPU is lost") as lost:
        nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
    assert isinstance(lost.value, fake.NVMLError_GpuIsLost) and lost.value.value == fake.NVML_ERROR_GPU_IS_LOST


# The inventory through the session ------------------------------------------------------------

def test_two_gpus_inventory() -> None:
    me = os.getpid()
    machine = h100s(2)
    machine[0]["processes"] = [{"pid": me, "used_mib": 512}]
    machine[1]["graphics_processes"] = [{"pid": 999_999_999, "used_mib": 3}]
    nvml = FakePynvml(machine)
    inv = probe_nvml(nvml, cpu_count=32)
    assert (inv.source, inv.driver_version, inv.cuda_driver_version, inv.problem, inv.notes) == ("nvml", "570.86.15", "12.8", None, ())
    first, second = inv.gpus
    assert (first.index, first.name, first.uuid) == (0, "NVIDIA H100 80GB HBM3", "GPU-00000000-1111-2222-3333-444444444444")
    assert (first.pci_bus_id, second.pci_bus_id) == ("00000000:18:00.0", "00000000:28:00.0")
    assert (first.memory_total_mib, first.memory_used_mib, first.compute_capability) == (81559, 1024, "9.0")
    assert first.processes[0].pid == me and first.processes[0].used_memory_mib == 512
    assert first.processes[0].name == Path("/proc/self/comm").read_text().strip()
    assert [(p.pid, p.used_memory_mib, p.name) for p in second.processes] == [(999_999_999, 3, None)]  # gone: no name
    assert (first.cpu_affinity, second.cpu_affinity) == (tuple(range(16)), tuple(range(16, 32)))
    assert first.mig_uuids == ()
    # One session: opened and shut once, each handle taken once.
    assert (nvml.calls["nvmlInit"], nvml.calls["nvmlShutdown"], nvml.calls["nvmlDeviceGetHandleByIndex"]) == (1, 1, 2)


def test_zero_and_eight_gpus() -> None:
    empty = probe_nvml(FakePynvml([]))
    assert (empty.gpus, empty.source, empty.problem) == ((), "nvml", None)
    eight = probe_nvml(FakePynvml(h100s(8)), cpu_count=128)
    assert [g.index for g in eight.gpus] == list(range(8))
    assert len({g.uuid for g in eight.gpus}) == 8
    assert [g.pci_bus_id for g in eight.gpus] == sorted(g.pci_bus_id for g in eight.gpus)
    assert eight.gpus[7].cpu_affinity == tuple(range(112, 128))


def test_strings_as_bytes_from_older_releases_read_the_same() -> None:
    machine = h100s(2, mig=["MIG-aaaa"])
    assert probe_nvml(FakePynvml(machine, strings="bytes"), cpu_count=32) == probe_nvml(FakePynvml(machine), cpu_count=32)


def test_mig_devices() -> None:
    on = {**h100s(1)[0], "mig": ["MIG-11111111-aaaa", "MIG-22222222-bbbb"], "max_mig": 7}
    off = {**h100s(1)[0], "uuid": "GPU-off", "mig": []}
    consumer = {"name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-4090"}  # no MIG at all: NotSupported
    inv = probe_nvml(FakePynvml([on, off, consumer]))
    assert [g.mig_uuids for g in inv.gpus] == [("MIG-11111111-aaaa", "MIG-22222222-bbbb"), (), ()]
    assert inv.owner_of_mig("MIG-22222222-bbbb") == inv.gpus[0]


def test_missing_fields_are_na_for_that_field_only() -> None:
    board = {
        "name": "Quadro without sensors",
        "compute_capability": None,
        "pci_bus_id": None,
        "cpus": None,
        "errors": {"nvmlDeviceGetComputeRunningProcesses": fake.NVML_ERROR_NO_PERMISSION},
        "graphics_processes": [{"pid": 7, "used_mib": None}, {"pid": 8, "used_bytes": 2**64 - 1}],
    }
    (gpu,) = probe_nvml(FakePynvml([board])).gpus
    assert (gpu.name, gpu.memory_total_mib) == ("Quadro without sensors", 81559)
    assert (gpu.compute_capability, gpu.pci_bus_id, gpu.cpu_affinity) == (None, "N/A", None)
    # NVML_VALUE_NOT_AVAILABLE: None from nvidia-ml-py, the raw value from older releases.
    assert [(p.pid, p.used_memory_mib) for p in gpu.processes] == [(7, None), (8, None)]


def test_cpu_affinity_asks_for_enough_words() -> None:
    far = {**h100s(1)[0], "cpus": [*list(range(64, 128)), 130]}
    (gpu,) = probe_nvml(FakePynvml([far]), cpu_count=192).gpus
    assert gpu.cpu_affinity == (*range(64, 128), 130)
    with NvmlSession(FakePynvml([far]), cpu_count=64) as session:
        assert session.devices[0].cpu_affinity() == ()  # one word: NVML could not say more


@pytest.mark.parametrize(
    ("code", "message"),
    [(fake.NVML_ERROR_DRIVER_NOT_LOADED, "Driver Not Loaded"), (fake.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found")],
)
def test_no_driver_is_nvml_unavailable(code: int, message: str) -> None:
    with pytest.raises(NvmlUnavailable, match=f"NVML could not start: {message}"):
        probe_nvml(FakePynvml(h100s(1), init_error=code))
    inv = probe_inventory(None, nvml=FakePynvml(h100s(1), init_error=code), smi=_no_smi)
    assert (inv.source, inv.gpus) == ("none", ())
    assert inv.problem == f"No NVIDIA GPU or driver found: NVML could not start: {message}, and nvidia-smi is not on PATH."


def test_nvml_failure_falls_back_to_nvidia_smi() -> None:
    smi = Inventory(gpus=probe_nvml(FakePynvml(h100s(1))).gpus, source="nvidia-smi", driver_version="570.86.15")
    inv = probe_inventory(None, nvml=FakePynvml(init_error=fake.NVML_ERROR_LIB_RM_VERSION_MISMATCH), smi=lambda: smi)
    assert inv.source == "nvidia-smi" and len(inv.gpus) == 1
    assert inv.notes == ("NVML unavailable (NVML could not start: RM has detected an NVML/RM version mismatch.); used nvidia-smi instead.",)


def test_probe_inventory_runs_the_whole_nvml_path() -> None:
    nvml = FakePynvml(h100s(2))
    inv = probe_inventory(None, nvml=nvml, smi=_no_smi)
    assert inv.source == "nvml" and [g.index for g in inv.gpus] == [0, 1]
    assert nvml.refcount == 0  # shut down again


def test_count_failure_shuts_nvml_down() -> None:
    nvml = FakePynvml(h100s(2), count_error=fake.NVML_ERROR_UNKNOWN)
    with pytest.raises(NvmlUnavailable, match="NVML could not list the GPUs: Unknown Error"):
        NvmlSession(nvml)
    assert (nvml.calls["nvmlShutdown"], nvml.refcount) == (1, 0)


def test_a_lost_gpu_is_left_out_and_the_others_stay() -> None:
    nvml = FakePynvml(h100s(3))
    nvml.lose(1)  # its handle cannot even be taken
    inv = probe_nvml(nvml)
    assert [g.index for g in inv.gpus] == [0, 2]
    assert inv.notes == ("GPU 1 did not answer NVML (GPU is lost); it is left out.",)
    # A GPU lost between taking its handle and reading its memory.
    machine = h100s(2)
    machine[0]["errors"] = {"nvmlDeviceGetMemoryInfo": fake.NVML_ERROR_GPU_IS_LOST}
    inv = probe_nvml(FakePynvml(machine))
    assert [g.index for g in inv.gpus] == [1]
    assert inv.notes == ("GPU 0 did not answer NVML (GPU is lost); it is left out.",)


# The session itself --------------------------------------------------------------------------

def test_session_readings_and_lifecycle() -> None:
    machine = h100s(2, processes=[{"pid": 42, "used_mib": 512}], graphics_processes=[{"pid": 42, "used_mib": 8}])
    machine[1]["power_mw"] = None
    nvml = FakePynvml(machine)
    with NvmlSession(nvml) as session:
        first, second = (d.reading() for d in session.devices)
        assert (session.driver_version, session.cuda_driver_version) == ("570.86.15", "12.8")
        assert (first.memory_used_mib, first.memory_total_mib, first.utilization_pct, first.memory_util_pct) == (1024, 81559, 97, 41)
        assert (first.temperature_c, first.power_w, first.power_limit_w) == (61, 612.345, 700.0)
        assert (first.sm_clock_mhz, first.mem_clock_mhz) == (1980, 2619)
        assert first.processes == (NvmlProcess(42, 8),)  # one row per pid, as before
        assert second.power_w is None and second.power_limit_w == 700.0
        nvml.lose(0)
        lost = session.devices[0].reading()
        assert (lost.memory_used_mib, lost.utilization_pct, lost.processes) == (None, None, ())
        assert session.devices[0].name == "NVIDIA H100 80GB HBM3" and session.devices[0].problem == "GPU is lost"
        assert session.devices[1].reading().temperature_c == 61
    assert nvml.refcount == 0
    session.close()
    assert nvml.calls["nvmlShutdown"] == 1
    assert session.devices[1].reading().temperature_c is None  # after close: Uninitialized, read as N/A


def test_session_shuts_down_when_the_body_raises() -> None:
    nvml = FakePynvml(h100s(1))
    with pytest.raises(RuntimeError), NvmlSession(nvml):
        raise RuntimeError("boom")
    assert nvml.refcount == 0


def test_cpu_affinity_reads_the_word_size_of_the_array() -> None:
    class OldNvml(FakePynvml):
        def nvmlDeviceGetCpuAffinity(self, handle: Any, cpuSetSize: int) -> Any:
            words = (ctypes.c_uint32 * cpuSetSize)()  # 32-bit words, as c_ulong on some platforms
            words[0] = 0b101
            return words

    with NvmlSession(OldNvml(h100s(1)), cpu_count=8) as session:
        assert session.devices[0].cpu_affinity() == (0, 2)
