"""A recorded monitor CSV -> a PNG: utilisation and memory per GPU over time.

matplotlib is an optional extra (``comfyrig[plot]``); it is imported only
here, and its absence is a one-line error saying how to install it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ComfyrigError, ConfigError
from .csvlog import read_csv

__all__ = ["plot_csv"]

INSTALL_HINT = "pip install 'comfyrig[plot]'"


def _matplotlib() -> tuple[Any, Any]:
    try:
        import matplotlib
    except ImportError as exc:
        raise ComfyrigError(
            f"Plotting needs matplotlib, which is not installed ({exc.msg}).", hint=f"Run: {INSTALL_HINT}"
        ) from exc
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    from matplotlib import dates

    return plt, dates


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def plot_csv(csv_path: Path, out_path: Path) -> int:
    """Write ``out_path``; returns the number of GPUs plotted. Raises ComfyrigError."""
    rows = read_csv(csv_path)
    series: dict[str, list[tuple[datetime, float | None, float | None]]] = {}
    for n, row in enumerate(rows, start=2):
        try:
            stamp = datetime.fromisoformat(row["timestamp"])
        except (TypeError, ValueError):
            raise ConfigError(f"{csv_path}, line {n}: {row['timestamp']!r} is not an ISO 8601 timestamp.") from None
        used, total = _float(row.get("memory_used_mib")), _float(row.get("memory_total_mib"))
        mem = 100.0 * used / total if used is not None and total else None
        series.setdefault(row["index"], []).append((stamp, _float(row.get("utilization_pct")), mem))
    plt, dates = _matplotlib()
    fig, (ax_util, ax_mem) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    for index, points in sorted(series.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0):
        times = [p[0] for p in points]
        ax_util.plot(times, [p[1] for p in points], label=f"GPU {index}")
        ax_mem.plot(times, [p[2] for p in points], label=f"GPU {index}")
    ax_util.set_ylabel("utilisation %")
    ax_mem.set_ylabel("memory used %")
    for ax in (ax_util, ax_mem):
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    ax_util.set_title(f"comfyrig monitor: {csv_path.name}")
    locator = dates.AutoDateLocator()
    ax_mem.xaxis.set_major_locator(locator)
    ax_mem.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    ax_mem.set_xlabel("time (UTC)")
    try:
        fig.savefig(out_path, dpi=100)
    except OSError as exc:
        raise ConfigError(f"--out {out_path}: cannot write there ({exc.strerror or exc}).") from exc
    finally:
        plt.close(fig)
    return len(series)
