from __future__ import annotations

from pathlib import Path

from comfyrig.monitor.host import HostSampler


def write(root: Path, user: int, idle: int) -> None:
    (root / "stat").write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")


def test_cpu_between_calls_and_memory(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree:  1 kB\nMemAvailable:    8192000 kB\n")
    write(tmp_path, user=100, idle=900)
    now = [0.0]
    host = HostSampler(tmp_path, clock=lambda: now[0])  # takes the first reading
    write(tmp_path, user=101, idle=900)
    now[0] = 0.05
    first = host.sample()
    assert first.cpu_pct is None  # a 50 ms window is mostly rounding: no figure yet
    assert (first.ram_total_mib, first.ram_used_mib) == (16000, 8000)
    write(tmp_path, user=130, idle=970)
    now[0] = 1.0
    assert host.sample().cpu_pct == 30.0  # since the first reading, not since the refused one
    write(tmp_path, user=140, idle=1060)
    now[0] = 2.0
    assert host.sample().cpu_pct == 10.0


def test_no_proc_gives_none(tmp_path: Path) -> None:
    sample = HostSampler(tmp_path / "missing").sample()
    assert (sample.cpu_pct, sample.ram_used_mib, sample.ram_total_mib) == (None, None, None)
    assert sample.cpu_count >= 1
