"""A fake ``pynvml`` (nvidia-ml-py) driven by plain data, for the NVML session's tests.

Written from nvidia-ml-py 13's ``pynvml.py``: the same function names and
parameter names (``test_nvml_session.py`` compares them with the installed
module), the same ``NVMLError`` class that maps an error code to its
``NVMLError_*`` subclass, the same constants and struct field names, ctypes
arrays where the real one returns them, ``None`` for a process memory that
NVML reports as ``NVML_VALUE_NOT_AVAILABLE``, and strings as ``str`` (newer
releases) or ``bytes`` (older ones, ``strings="bytes"``).

A machine is a list of device dicts, every key optional::

    {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-...", "pci_bus_id": "00000000:18:00.0",
     "memory_total_mib": 81559, "memory_used_mib": 1024, "compute_capability": (9, 0),
     "utilization": (97, 41),            # (gpu %, memory %)
     "temperature_c": 61, "power_mw": 612_345, "power_limit_mw": 700_000,
     "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
     "processes": [{"pid": 100, "used_mib": 512}],   # compute; used_mib None: not available
                                         # ("used_bytes": raw usedGpuMemory, as old releases passed it)
     "graphics_processes": [],
     "mig": ["MIG-..."],                 # MIG on, these devices in its first slots; [] MIG off;
                                         # no key: a board without MIG (NotSupported)
     "max_mig": 7,
     "cpus": [0, 1, 2],                  # CPU affinity
     "errors": {"nvmlDeviceGetPowerUsage": NVML_ERROR_NOT_SUPPORTED}}  # per function

A value of None makes its function raise NVMLError_NotSupported, as a board
without that sensor does. ``lose(index)`` makes every later call on that GPU,
its handle included, raise NVMLError_GpuIsLost. Every call is counted in
``calls`` by function name.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

# Error codes and messages, as in pynvml.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_DEVICE_MIG_DISABLE = 0x0
NVML_DEVICE_MIG_ENABLE = 0x1
NVML_VALUE_NOT_AVAILABLE_ulonglong = ctypes.c_ulonglong(-1)


class NVMLError(Exception):
    """``NVMLError(code)`` builds the code's subclass, whose str() is NVML's message."""

    _valClassMapping: ClassVar[dict[int, type[NVMLError]]] = {}
    _errcode_to_string: ClassVar[dict[int, str]] = {
        NVML_ERROR_UNINITIALIZED: "Uninitialized",
        NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
        NVML_ERROR_NOT_SUPPORTED: "Not Supported",
        NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
        NVML_ERROR_NOT_FOUND: "Not Found",
        NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
        NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
        NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
        NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
        NVML_ERROR_UNKNOWN: "Unknown Error",
    }
    value: int

    def __new__(cls, value: int) -> NVMLError:
        typ = NVMLError._valClassMapping.get(value, cls) if cls is NVMLError else cls
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return self._errcode_to_string.get(self.value, f"NVML Error with code {self.value}")


def _subclass(name: str, code: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    cls = type(name, (NVMLError,), {"__new__": new})
    NVMLError._valClassMapping[code] = cls
    return cls


NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _subclass("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _subclass("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _subclass("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_InsufficientSize = _subclass("NVMLError_InsufficientSize", NVML_ERROR_INSUFFICIENT_SIZE)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _subclass("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _subclass("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_LibRmVersionMismatch = _subclass("NVMLError_LibRmVersionMismatch", NVML_ERROR_LIB_RM_VERSION_MISMATCH)
NVMLError_Unknown = _subclass("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


# Structs: the real ones are ctypes structures; these carry the same field names.
@dataclass
class c_nvmlMemory_t:
    total: int  # bytes
    free: int
    used: int


@dataclass
class c_nvmlUtilization_t:
    gpu: int  # %
    memory: int


@dataclass
class nvmlPciInfo_t:
    busIdLegacy: str | bytes
    domain: int
    bus: int
    device: int
    pciDeviceId: int
    pciSubSystemId: int
    busId: str | bytes


@dataclass
class nvmlFriendlyObject:
    """What nvmlDeviceGet*RunningProcesses return: a c_nvmlProcessInfo_v3_t as an object."""

    pid: int
    usedGpuMemory: int | None  # bytes; None when NVML says NVML_VALUE_NOT_AVAILABLE
    gpuInstanceId: int
    computeInstanceId: int


@dataclass(frozen=True)
class Handle:
    """An opaque device handle (c_nvmlDevice_t); ``mig_slot`` for a MIG device's."""

    index: int
    mig_slot: int | None = None


H100: dict[str, Any] = {
    "name": "NVIDIA H100 80GB HBM3",
    "memory_total_mib": 81559,
    "memory_used_mib": 1024,
    "compute_capability": (9, 0),
    "utilization": (97, 41),
    "temperature_c": 61,
    "power_mw": 612_345,
    "power_limit_mw": 700_000,
    "sm_clock_mhz": 1980,
    "mem_clock_mhz": 2619,
}


def h100s(count: int, **overrides: Any) -> list[dict[str, Any]]:
    """``count`` H100s on consecutive PCI buses, each near its own 16 CPUs."""
    return [
        {**H100, "pci_bus_id": f"00000000:{0x18 + 0x10 * i:02X}:00.0", "cpus": list(range(16 * i, 16 * i + 16)), **overrides}
        for i in range(count)
    ]


class FakePynvml:
    """The pynvml module's surface for one scripted machine."""

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_DEVICE_MIG_DISABLE = NVML_DEVICE_MIG_DISABLE
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE
    NVML_VALUE_NOT_AVAILABLE_ulonglong = NVML_VALUE_NOT_AVAILABLE_ulonglong

    def __init__(
        self,
        devices: Sequence[Mapping[str, Any]] = (),
        *,
        driver_version: str = "570.86.15",
        cuda_driver_version: int = 12080,
        init_error: int | None = None,  # e.g. NVML_ERROR_DRIVER_NOT_LOADED: nvmlInit raises it
        count_error: int | None = None,
        strings: Literal["str", "bytes"] = "str",
    ) -> None:
        self.devices = [dict(d) for d in devices]
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.count_error = count_error
        self.strings = strings
        self.calls: Counter[str] = Counter()
        self.lost: set[int] = set()
        self.refcount = 0  # NVML counts nvmlInit calls; the last nvmlShutdown closes it

    def lose(self, index: int) -> None:
        """The GPU falls off the bus: from now on every call on it raises GPU_IS_LOST."""
        self.lost.add(index)

    # Plumbing ------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if self.refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _text(self, value: str) -> str | bytes:
        return value.encode() if self.strings == "bytes" else value

    def _device(self, name: str, handle: Handle) -> dict[str, Any]:
        self._enter(name)
        if handle.index in self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        device = self.devices[handle.index]
        code = device.get("errors", {}).get(name)
        if code is not None:
            raise NVMLError(code)
        return device

    def _field(self, name: str, handle: Handle, key: str, default: Any = None) -> Any:
        device = self._device(name, handle)
        value = device.get(key, default)
        if value is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    def _uuid_of(self, index: int) -> str:
        return str(self.devices[index].get("uuid", f"GPU-{index:08x}-1111-2222-3333-444444444444"))

    # Library -------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.refcount += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._enter("nvmlSystemGetDriverVersion")
        return self._text(self.driver_version)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        if self.count_error is not None:
            raise NVMLError(self.count_error)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if index in self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return Handle(index)

    # Static facts ----------------------------------------------------------------

    def nvmlDeviceGetName(self, handle: Handle) -> str | bytes:
        return self._text(self._field("nvmlDeviceGetName", handle, "name", "NVIDIA H100 80GB HBM3"))

    def nvmlDeviceGetUUID(self, handle: Handle) -> str | bytes:
        device = self._device("nvmlDeviceGetUUID", handle)
        if handle.mig_slot is not None:
            return self._text(device["mig"][handle.mig_slot])
        return self._text(self._uuid_of(handle.index))

    def nvmlDeviceGetPciInfo(self, handle: Handle) -> nvmlPciInfo_t:
        bus_id = self._field("nvmlDeviceGetPciInfo", handle, "pci_bus_id", f"00000000:{0x18 + handle.index:02X}:00.0")
        bus = int(bus_id.split(":")[1], 16)
        return nvmlPciInfo_t(
            busIdLegacy=self._text(bus_id), domain=0, bus=bus, device=0, pciDeviceId=0x233010DE, pciSubSystemId=0,
            busId=self._text(bus_id),
        )

    def nvmlDeviceGetCudaComputeCapability(self, handle: Handle) -> tuple[int, int]:
        major, minor = self._field("nvmlDeviceGetCudaComputeCapability", handle, "compute_capability", (9, 0))
        return (major, minor)

    def nvmlDeviceGetCpuAffinity(self, handle: Handle, cpuSetSize: int) -> Any:
        cpus = self._field("nvmlDeviceGetCpuAffinity", handle, "cpus", [])
        words = (ctypes.c_ulonglong * cpuSetSize)()
        for cpu in cpus:
            if cpu // 64 < cpuSetSize:  # NVML writes only the words it was given
                words[cpu // 64] |= 1 << (cpu % 64)
        return words

    def nvmlDeviceGetMigMode(self, device: Handle) -> list[int]:
        mig = self._field("nvmlDeviceGetMigMode", device, "mig")  # no "mig" key: a board without MIG
        mode = NVML_DEVICE_MIG_ENABLE if mig else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: Handle) -> int:
        return int(self._field("nvmlDeviceGetMaxMigDeviceCount", device, "max_mig", 7))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Handle, index: int) -> Handle:
        mig = self._field("nvmlDeviceGetMigDeviceHandleByIndex", device, "mig", [])
        if not 0 <= index < len(mig):
            raise NVMLError(NVML_ERROR_NOT_FOUND)  # an empty slot
        return Handle(device.index, index)

    # Dynamic readings --------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: int | None = None) -> c_nvmlMemory_t:
        device = self._device("nvmlDeviceGetMemoryInfo", handle)
        total, used = device.get("memory_total_mib", 81559), device.get("memory_used_mib", 0)
        if total is None or used is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return c_nvmlMemory_t(total=total * 2**20, free=(total - used) * 2**20, used=used * 2**20)

    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> c_nvmlUtilization_t:
        gpu, memory = self._field("nvmlDeviceGetUtilizationRates", handle, "utilization")
        return c_nvmlUtilization_t(gpu=gpu, memory=memory)

    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int:
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return int(self._field("nvmlDeviceGetTemperature", handle, "temperature_c"))

    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int:
        return int(self._field("nvmlDeviceGetPowerUsage", handle, "power_mw"))  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int:
        return int(self._field("nvmlDeviceGetEnforcedPowerLimit", handle, "power_limit_mw"))  # mW

    def nvmlDeviceGetClockInfo(self, handle: Handle, type: int) -> int:
        key = {NVML_CLOCK_SM: "sm_clock_mhz", NVML_CLOCK_MEM: "mem_clock_mhz"}.get(type)
        if key is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return int(self._field("nvmlDeviceGetClockInfo", handle, key))

    def _processes(self, name: str, handle: Handle, key: str) -> list[nvmlFriendlyObject]:
        procs = self._field(name, handle, key, [])
        return [
            nvmlFriendlyObject(
                pid=p["pid"],
                usedGpuMemory=p["used_bytes"] if "used_bytes" in p else None if p.get("used_mib") is None else p["used_mib"] * 2**20,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            for p in procs
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[nvmlFriendlyObject]:
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle, "processes")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Handle) -> list[nvmlFriendlyObject]:
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses", handle, "graphics_processes")
