from __future__ import annotations

import sys
from pathlib import Path

import pytest

from comfyrig.errors import ComfyrigError, ConfigError
from comfyrig.monitor.plot import plot_csv

CSV = """timestamp,index,uuid,utilization_pct,memory_used_mib,memory_total_mib,temperature_c,power_w
2025-01-01T00:00:00.000+00:00,0,GPU-a,10,1000,24576,40,100
2025-01-01T00:00:00.000+00:00,1,GPU-b,,0,24576,,
2025-01-01T00:00:01.000+00:00,0,GPU-a,90,20000,24576,70,300
2025-01-01T00:00:01.000+00:00,1,GPU-b,5,100,24576,35,80
"""


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra (comfyrig[plot]) is not installed")
    source = tmp_path / "run.csv"
    source.write_text(CSV)
    out = tmp_path / "run.png"
    assert plot_csv(source, out) == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "run.csv"
    source.write_text(CSV)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(ComfyrigError) as info:
        plot_csv(source, tmp_path / "run.png")
    assert "pip install 'comfyrig[plot]'" in str(info.value)


def test_bad_timestamp_names_the_line(tmp_path: Path) -> None:
    source = tmp_path / "run.csv"
    source.write_text(CSV.replace("2025-01-01T00:00:01.000+00:00,1", "yesterday,1"))
    with pytest.raises(ConfigError, match="line 5: 'yesterday'"):
        plot_csv(source, tmp_path / "run.png")
