"""MemAvailable from a meminfo file."""

from __future__ import annotations

from pathlib import Path

from comfyrig.fit.ram import mem_available


def test_reads_mem_available_in_bytes(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65843212 kB\nMemFree:         1000 kB\nMemAvailable:   40000000 kB\n")
    assert mem_available(meminfo) == 40000000 * 1024


def test_unknown_when_missing_or_odd(tmp_path: Path) -> None:
    assert mem_available(tmp_path / "absent") is None
    odd = tmp_path / "meminfo"
    odd.write_text("MemTotal: 1 kB\n")
    assert mem_available(odd) is None
