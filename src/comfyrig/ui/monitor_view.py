"""The monitor's panels: pure functions from a Snapshot (and trends) to renderables.

Nothing here samples or sleeps; tests render these to a string console and
compare text. "N/A" marks a value the driver could not give.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
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
_FULL_WIDTH = 100  # from this width the GPU table shows clocks and power limits
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


def _util_cell(gpu: GpuSample) -> Text:
    pct = gpu.utilization_pct
    return bar(pct, 8) + Text(f" {_num(pct, '%'):>4}")


def _memory_cell(gpu: GpuSample) -> Text:
    return bar(gpu.memory_pct, 8) + Text(f" {_gib(gpu.memory_used_mib):>4}/{_gib(gpu.memory_total_mib)}")


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


# The tables are laid out by hand in fixed-width columns: a monitor redraws
# them every second, and Rich's Table (which measures every cell) cost ten
# times more CPU than this for eight GPUs.
@dataclass(frozen=True)
class _Col:
    title: str
    width: int
    right: bool = False


Cell = str | Text
_GAP = "  "


def _fit(cell: Cell, col: _Col) -> Text:
    text = Text(cell) if isinstance(cell, str) else cell
    text.truncate(col.width, overflow="ellipsis")
    pad = Text(" " * (col.width - text.cell_len))
    return pad + text if col.right else text + pad


def _grid(title: str | None, cols: Sequence[_Col], lines: Sequence[Sequence[Cell]]) -> Text:
    """A title, a header, a rule and the lines, columns padded or cut to their widths."""
    out = Text(no_wrap=True, overflow="ellipsis")
    if title:
        out.append("\n" + title + "\n", style="bold")
    header = Text(_GAP.join(_fit(c.title, c).plain for c in cols).rstrip(), style="bold")
    out.append(" ").append(header).append("\n ")
    out.append("─" * (sum(c.width for c in cols) + len(_GAP) * (len(cols) - 1)), style="dim")
    for line in lines:
        row = Text(" ")
        for n, (cell, col) in enumerate(zip(line, cols, strict=False)):
            if n:
                row.append(_GAP)
            row.append_text(_fit(cell, col))
        row.rstrip()
        out.append("\n").append_text(row)
    return out


def _width_left(width: int, fixed: Sequence[_Col], low: int, high: int) -> int:
    used = 1 + sum(c.width for c in fixed) + len(_GAP) * len(fixed)
    return max(low, min(high, width - used))


def gpu_table(snapshot: Snapshot, trends: Mapping[str, Trend] | None = None, *, width: int = _FULL_WIDTH) -> Text:
    """One row per GPU; with ``trends``, a sparkline under the util and memory bars.

    Under 100 columns the clocks and the power limit are left out, and the
    name column shrinks before any number does.
    """
    compact = width < _FULL_WIDTH
    memory = [_memory_cell(gpu) for gpu in snapshot.gpus]
    fixed = [_Col("#", 2, True), _Col("util", 13), _Col("memory GiB", max([18, *(m.cell_len for m in memory)])), _Col("temp", 5, True)]
    fixed += [_Col("power W", 7, True)] if compact else [_Col("power W", 9, True), _Col("SM/mem MHz", 10, True)]
    fixed.append(_Col("ComfyUI", 7))
    cols = [fixed[0], _Col("GPU", _width_left(width, fixed, 8, 24)), *fixed[1:]]
    lines: list[list[Cell]] = []
    for gpu, memory_cell in zip(snapshot.gpus, memory, strict=True):
        power = _num(gpu.power_w) if compact else _power(gpu)
        extra = [] if compact else [_clocks(gpu)]
        lines.append([str(gpu.index), _short_name(gpu.name), _util_cell(gpu), memory_cell,
                      _num(gpu.temperature_c, "°C"), power, *extra, _owner(gpu)])
        trend = trends.get(gpu.uuid) if trends is not None else None
        if trend is not None:
            lines.append(["", "", Text(sparkline(trend.utilization, 13), style="cyan"),
                          Text(sparkline(trend.memory, 13), style="magenta")])
    return _grid(None, cols, lines)


def process_table(snapshot: Snapshot, *, width: int = _FULL_WIDTH) -> Text | None:
    """The processes on the GPUs (pid, user, memory, command), or None when there are none."""
    rows = [(gpu, proc) for gpu in snapshot.gpus for proc in gpu.processes]
    if not rows:
        return None
    fixed = [_Col("GPU", 3, True), _Col("pid", 7, True), _Col("user", 10), _Col("memory", 9, True)]
    cols = [*fixed, _Col("command", _width_left(width, fixed, 10, 200))]
    lines: list[list[Cell]] = [
        [str(gpu.index), str(proc.pid), proc.user or NA,
         NA if proc.memory_mib is None else f"{proc.memory_mib} MiB", proc.command or NA]
        for gpu, proc in rows
    ]
    return _grid("GPU processes", cols, lines)


def _instance_gpus(instance: InstanceSample, gpus: Sequence[GpuSample]) -> str:
    owned = [str(g.index) for g in gpus if instance.port is not None and instance.port in g.owner_ports]
    return ",".join(owned) or "-"


def instance_table(snapshot: Snapshot, *, width: int = _FULL_WIDTH) -> Text | None:
    """The watched ComfyUI instances, or None when none is watched."""
    if not snapshot.instances:
        return None
    url_width = min(max(len(i.url) for i in snapshot.instances), 40)
    # What each one is (the gateway, a cluster worker and its node), when any says.
    label_width = min(max(len(i.label or "") for i in snapshot.instances), 48)
    labelled = [_Col("what", label_width)] if label_width else []
    fixed = [_Col("URL", url_width), *labelled, _Col("state", 5), _Col("running", 7, True), _Col("pending", 7, True),
             _Col("GPUs", 5)]
    cols = [*fixed, _Col("last error", _width_left(width, fixed, 10, 200))]
    lines: list[list[Cell]] = [
        [inst.url, *([inst.label or ""] if labelled else []), Text(inst.state, style=_STATE_STYLE[inst.state]),
         "-" if inst.running is None else str(inst.running), "-" if inst.pending is None else str(inst.pending),
         _instance_gpus(inst, snapshot.gpus), inst.last_error or ""]
        for inst in snapshot.instances
    ]
    return _grid("ComfyUI instances", cols, lines)


class _AtWidth:
    """Builds its renderable for the width it is drawn at."""

    def __init__(self, build: Callable[[int], RenderableType]) -> None:
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)


def monitor_view(snapshot: Snapshot, trends: Mapping[str, Trend] | None = None) -> Group:
    """The whole live view for one tick."""

    def body(width: int) -> Group:
        parts: list[RenderableType] = [header(snapshot)]
        if snapshot.gpus:
            parts.append(gpu_table(snapshot, trends, width=width))
            procs = process_table(snapshot, width=width)
            if procs is not None:
                parts.append(procs)
        else:
            why = snapshot.problem or "the driver reports no GPU"
            parts.append(Text(f"No GPU to show: {why} Showing CPU and RAM only.", style="yellow"))
        instances = instance_table(snapshot, width=width)
        if instances is not None:
            parts.append(instances)
        parts.extend(Text(note, style="dim") for note in snapshot.notes)
        return Group(*parts)

    return Group(_AtWidth(body))


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
