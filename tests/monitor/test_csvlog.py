from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from comfyrig.errors import ConfigError
from comfyrig.monitor.collect import Monitor
from comfyrig.monitor.csvlog import CsvLog, read_csv
from comfyrig.monitor.host import HostSampler
from comfyrig.monitor.sampler import SimulatedSampler


def snapshots(data: dict[str, Any], n: int) -> list[Any]:
    m = Monitor(SimulatedSampler(data), host=HostSampler(), clock=lambda: 1_700_000_000.5)
    return [m.snapshot() for _ in range(n)]


def test_header_once_then_rows_appended(tmp_path: Path, two_3090: dict[str, Any]) -> None:
    path = tmp_path / "gpu.csv"
    first, second = snapshots(two_3090, 2)
    log = CsvLog(path)
    log.write(first)
    log.close()
    log = CsvLog(path)  # a second recording appends, without a second header
    log.write(second)
    log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,index,uuid,utilization_pct,memory_used_mib,memory_total_mib,temperature_c,power_w"
    assert lines[1] == "2023-11-14T22:13:20.500+00:00,0,GPU-5a5a5a5a-0000-4000-8000-000000000000,45,12288,24576,65,250.4"
    # N/A values are empty cells, not zeros.
    assert lines[2] == "2023-11-14T22:13:20.500+00:00,1,GPU-5a5a5a5a-0000-4000-8000-000000000001,,0,24576,,"
    assert len(lines) == 5
    assert [row["index"] for row in read_csv(path)] == ["0", "1", "0", "1"]


def test_refuses_a_foreign_csv(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="exists with other columns"):
        CsvLog(path)
    with pytest.raises(ConfigError, match="not a comfyrig monitor CSV"):
        read_csv(path)


def test_unwritable_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        CsvLog(tmp_path / "no" / "such" / "dir.csv")


def test_no_gpus_writes_only_the_header(tmp_path: Path, two_3090: dict[str, Any]) -> None:
    (snapshot,) = snapshots(two_3090, 1)
    log = CsvLog(tmp_path / "x.csv")
    log.write(dataclasses.replace(snapshot, gpus=()))
    log.close()
    with pytest.raises(ConfigError, match="holds no samples"):
        read_csv(tmp_path / "x.csv")
