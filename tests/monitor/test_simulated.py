from __future__ import annotations

from typing import Any

import pytest

from comfyrig.errors import ConfigError
from comfyrig.monitor.sampler import SimulatedSampler, open_sampler


def test_static_values_and_owner(two_3090: dict[str, Any]) -> None:
    gpus = SimulatedSampler(two_3090).sample(0)
    first, second = gpus
    assert (first.utilization_pct, first.temperature_c, first.power_w, first.power_limit_w) == (45, 65, 250.4, 350.0)
    assert (first.sm_clock_mhz, first.mem_clock_mhz, first.memory_used_mib) == (1980, 9501, 12288)
    assert first.owner_ports == (8188,)
    assert first.processes[0].user == "alice"
    # A GPU without live keys says N/A, as a board that cannot tell would.
    assert (second.utilization_pct, second.temperature_c, second.power_w) == (None, None, None)
    assert second.owner_ports == ()


def test_script_cycles_per_tick(two_3090: dict[str, Any]) -> None:
    two_3090["gpus"][1]["script"] = [
        {"utilization_pct": 0, "memory_used_mib": 100},
        {"utilization_pct": 100, "memory_used_mib": 20000},
    ]
    sampler = SimulatedSampler(two_3090)
    seen = [(s.utilization_pct, s.memory_used_mib) for s in (sampler.sample(t)[1] for t in range(4))]
    assert seen == [(0, 100), (100, 20000), (0, 100), (100, 20000)]


def test_vary_is_deterministic_and_moves(two_3090: dict[str, Any]) -> None:
    two_3090["gpus"][1]["vary"] = True
    a, b = SimulatedSampler(two_3090), SimulatedSampler(two_3090)
    series = [a.sample(t)[1].utilization_pct for t in range(20)]
    assert series == [b.sample(t)[1].utilization_pct for t in range(20)]
    assert len(set(series)) > 5
    assert all(s is not None and 0 <= s <= 100 for s in series)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"utilization_pct": "high"}, "utilization_pct must be a number"),
        ({"script": {"utilization_pct": 1}}, "script must be a list"),
        ({"script": [{"utilisation": 1}]}, "unknown key.*utilisation"),
        ({"processes": [{"pid": 1, "port": "x"}]}, "malformed port"),
    ],
)
def test_bad_simulated_values_name_the_gpu(two_3090: dict[str, Any], change: dict[str, Any], message: str) -> None:
    two_3090["gpus"][1].update(change)
    with pytest.raises(ConfigError, match=f"GPU 1.*{message}"):
        SimulatedSampler(two_3090)


def test_open_sampler_reads_the_variable(tmp_path: Any) -> None:
    path = tmp_path / "gpus.json"
    path.write_text('[{"name": "A100", "memory_total_mib": 81920}]')
    sampler = open_sampler(str(path))
    assert sampler.source == "simulated"
    assert [g.name for g in sampler.sample(0)] == ["A100"]
