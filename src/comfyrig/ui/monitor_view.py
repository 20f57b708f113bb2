"""The monitor's panels: pure functions from a Snapshot (and trends) to renderables.

Nothing here samples or sleeps; tests render these to a string console and
compare text. "N/A" marks a value the driver could not give.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from ..monitor.history import Trend
from ..monitor.snapshot import GpuSample, InstanceSample, Snapshot

__all__ = [
    "bar",
    "dmon_header",
    "dmon_line",
    "gpu_table",
    "header",
    "instance_table",
    "monitor_view",
    "process_table",
    "sparkline",
]

NA = "N/A"
_BLOCKS = "▁▂▃▄▅▆▇█"
_SOURCES = {"nvml": "NVML", "simulated": "simulated (COMFYRIG_FAKE_GPUS)", "none": "no driver"}
_FULL_WIDTH = 100  # columns the full GPU table needs
_STATE_STYLE = {"up": "green", "down": "red", "error": "yellow"}


def _level_style(pct: float) -> str:
    return "red" if pct >= 90 else "yellow" if pct >= 70 else "green"


def bar(pct: float | None, width: int = 10) -> Text:
    """A bar of ``width`` cells, filled to ``pct`` (0-100); blank when N/A."""
    if pct is None:
        return Text(" " * width)
    filled = round(max(0.0, min(pct, 100.0)) / 100 * width)
    return Text("█" * filled, style=_level_style(pct)) + Text("░" * (width - filled), style="dim")


def sparkline(values: Sequence[float | None], width: int = 20) -> str:
    """The last values (0-100) as block characters, newest on the right.

    More values than ``width`` are averaged in equal buckets, so the line
    always covers the whole window; N/A points are blanks.
    """
    if not values:
        return ""
    if len(values) > width:
        buckets = [values[len(values) * i // width : len(values) * (i + 1) // width] for i in range(width)]
        points: list[float | None] = []
        for bucket in buckets:
            known = [v for v in bucket if v is not None]
            points.append(sum(known) / len(known) if known else None)
    else:
        points = list(values)
    top = len(_BLOCKS) - 1
    return "".join(
        " " if v is None else _BLOCKS[round(max(0.0, min(v, 100.0)) / 100 * top)] for v in points
    )


def _gib(mib: int | None) -> str:
    return NA if mib is None else f"{mib / 1024:.1f}"


def _num(value: float | None, unit: str = "") -> str:
    return NA if value is None else f"{value:.0f}{unit}"


def header(snapshot: Snapshot) -> Text:
    host = snapshot.host
    parts = [
        time.strftime("%H:%M:%S", time.localtime(snapshot.time)),
        f"{len(snapshot.gpus)} GPU{'s' if len(snapshot.gpus) != 1 else ''} via {_SOURCES.get(snapshot.source, snapshot.source)}",
    ]
    if snapshot.driver_version:
        parts.append(f"driver {snapshot.driver_version}")
    cpu = NA if host.cpu_pct is None else f"{host.cpu_pct:.0f}%"
    parts.append(f"CPU {cpu} of {host.cpu_count} cores")
    if host.ram_total_mib is not None and host.ram_used_mib is not None:
        parts.append(f"RAM {_gib(host.ram_used_mib)}/{_gib(host.ram_total_mib)} GiB")
    text = Text("comfyrig monitor", style="bold")
    text.append(" · " + " · ".join(parts))
    return text


def _util_cell(gpu: GpuSample, trend: Trend | None) -> Text:
    pct = gpu.utilization_pct
    cell = bar(pct, 8) + Text(f" {_num(pct, '%'):>4}")
    if trend is not None:
        cell.append("\n" + sparkline(trend.utilization, 13), style="cyan")
    return cell


def _memory_cell(gpu: GpuSample, trend: Trend | None) -> Text:
    cell = bar(gpu.memory_pct, 8) + Text(f" {_gib(gpu.memory_used_mib):>4}/{_gib(gpu.memory_total_mib)}")
    if trend is not None:
        cell.append("\n" + sparkline(trend.memory, 13), style="magenta")
    return cell


def _short_name(name: str) -> str:
    # Every board here is NVIDIA's; the prefix only pushes the model number off a narrow screen.
    return name.removeprefix("NVIDIA ")


def _power(gpu: GpuSample) -> str:
    if gpu.power_w is None:
        return NA
    return f"{gpu.power_w:.0f}/{_num(gpu.power_limit_w)}" if gpu.power_limit_w is not None else f"{gpu.power_w:.0f}"


def _clocks(gpu: GpuSample) -> str:
    if gpu.sm_clock_mhz is None and gpu.mem_clock_mhz is None:
        return NA
    return f"{_num(gpu.sm_clock_mhz)}/{_num(gpu.mem_clock_mhz)}"


def _owner(gpu: GpuSample) -> str:
    return " ".join(f":{p}" for p in gpu.owner_ports) or "-"


def gpu_table(snapshot: Snapshot, trends: Mapping[str, Trend] | None = None, *, compact: bool = False) -> Table:
    """One row per GPU; with ``trends``, a sparkline under the util and memory bars.

    ``compact`` (for terminals under 100 columns) drops the clocks and the power limit.
    """
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, expand=False)
    table.add_column("#", justify="right", no_wrap=True)
    # Only the name may wrap: on a narrow terminal it gives way before the numbers do.
    table.add_column("GPU", min_width=8)
    table.add_column("util", no_wrap=True)
    table.add_column("memory GiB", no_wrap=True)
    table.add_column("temp", justify="right", no_wrap=True)
    table.add_column("power W", justify="right", no_wrap=True)
    if not compact:
        table.add_column("SM/mem MHz", justify="right", no_wrap=True)
    table.add_column("ComfyUI", no_wrap=True)
    for gpu in snapshot.gpus:
        trend = trends.get(gpu.uuid) if trends is not None else None
        cells: list[RenderableType] = [
            str(gpu.index),
            _short_name(gpu.name),
            _util_cell(gpu, trend),
            _memory_cell(gpu, trend),
            _num(gpu.temperature_c, "°C"),
            _num(gpu.power_w) if compact else _power(gpu),
        ]
        if not compact:
            cells.append(_clocks(gpu))
        cells.append(_owner(gpu))
        table.add_row(*cells)
    return table


class _FitGpuTable:
    """Chooses the full or the compact GPU table for the width it is drawn at."""

    def __init__(self, snapshot: Snapshot, trends: Mapping[str, Trend] | None) -> None:
        self.snapshot = snapshot
        self.trends = trends

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield gpu_table(self.snapshot, self.trends, compact=options.max_width < _FULL_WIDTH)


def process_table(snapshot: Snapshot) -> Table | None:
    """The processes on the GPUs (pid, user, memory, command), or None when there are none."""
    rows = [(gpu, proc) for gpu in snapshot.gpus for proc in gpu.processes]
    if not rows:
        return None
    table = Table(title="GPU processes", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("GPU", justify="right")
    table.add_column("pid", justify="right")
    table.add_column("user", max_width=12, overflow="ellipsis", no_wrap=True)
    table.add_column("memory", justify="right")
    table.add_column("command", overflow="ellipsis")
    for gpu, proc in rows:
        table.add_row(
            str(gpu.index),
            str(proc.pid),
            proc.user or NA,
            NA if proc.memory_mib is None else f"{proc.memory_mib} MiB",
            proc.command or NA,
        )
    return table


def _instance_gpus(instance: InstanceSample, gpus: Sequence[GpuSample]) -> str:
    owned = [str(g.index) for g in gpus if instance.port is not None and instance.port in g.owner_ports]
    return ",".join(owned) or "-"


def instance_table(snapshot: Snapshot) -> Table | None:
    """The watched ComfyUI instances, or None when none is watched."""
    if not snapshot.instances:
        return None
    table = Table(title="ComfyUI instances", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("URL", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("pending", justify="right", no_wrap=True)
    table.add_column("GPUs", no_wrap=True)
    table.add_column("last error", overflow="ellipsis")
    for inst in snapshot.instances:
        table.add_row(
            inst.url,
            Text(inst.state, style=_STATE_STYLE[inst.state]),
            "-" if inst.running is None else str(inst.running),
            "-" if inst.pending is None else str(inst.pending),
            _instance_gpus(inst, snapshot.gpus),
            inst.last_error or "",
        )
    return table


def monitor_view(snapshot: Snapshot, trends: Mapping[str, Trend] | None = None) -> Group:
    """The whole live view for one tick."""
    parts: list[RenderableType] = [header(snapshot)]
    if snapshot.gpus:
        parts.append(_FitGpuTable(snapshot, trends))
        procs = process_table(snapshot)
        if procs is not None:
            parts.append(procs)
    else:
        why = snapshot.problem or "the driver reports no GPU"
        parts.append(Text(f"No GPU to show: {why} Showing CPU and RAM only.", style="yellow"))
    instances = instance_table(snapshot)
    if instances is not None:
        parts.append(instances)
    parts.extend(Text(note, style="dim") for note in snapshot.notes)
    return Group(*parts)


# nvidia-smi dmon's layout: '#' header lines, then one right-aligned line per GPU per tick.
_DMON_COLUMNS = (
    ("gpu", "Idx"),
    ("pwr", "W"),
    ("gtemp", "C"),
    ("sm", "%"),
    ("mem", "%"),
    ("fb", "MiB"),
    ("mclk", "MHz"),
    ("pclk", "MHz"),
)


def dmon_header() -> list[str]:
    names = "".join(f"{name:>6}" for name, _ in _DMON_COLUMNS)
    units = "".join(f"{unit:>6}" for _, unit in _DMON_COLUMNS)
    return [f"{'#Time':<9}{names}", f"#HH:MM:SS{units}"]


def dmon_line(snapshot: Snapshot, gpu: GpuSample) -> str:
    def cell(value: float | None) -> str:
        return f"{'-' if value is None else f'{value:.0f}':>6}"

    values = (
        gpu.index,
        gpu.power_w,
        gpu.temperature_c,
        gpu.utilization_pct,
        gpu.memory_util_pct,
        gpu.memory_used_mib,
        gpu.mem_clock_mhz,
        gpu.sm_clock_mhz,
    )
    return " " + time.strftime("%H:%M:%S", time.localtime(snapshot.time)) + "".join(cell(v) for v in values)
