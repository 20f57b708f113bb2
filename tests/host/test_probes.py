import json
import os
import stat
import sys
from pathlib import Path

import pytest

from comfyrig.errors import ConfigError, GpuProbeError
from comfyrig.host.gpus.nvml import cuda_version_text, decode_cpu_mask
from comfyrig.host.gpus.probe import probe_inventory
from comfyrig.host.gpus.simulated import load_simulated
from comfyrig.host.gpus.smi import parse_apps_csv, parse_gpu_csv, probe_smi
from comfyrig.host.gpus.torchcheck import judge_torch, run_torch_check


def test_simulated_inline_and_file(tmp_path: Path) -> None:
    data = {"driver_version": "550.54", "cuda_driver_version": "12.4", "gpus": [{"name": "X", "memory_total_mib": 100, "memory_used_mib": 40}]}
    inline = load_simulated(json.dumps(data))
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps(data))
    assert load_simulated(str(path)) == inline
    assert inline.cuda_driver_version == "12.4" and inline.gpus[0].memory_free_mib == 60
    assert probe_inventory(str(path)).source == "simulated"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("[{", "not valid JSON"),
        ('[{"name": "X"}]', "memory_total_mib"),
        ('{"gpus": 3}', "JSON list"),
        ('[{"name": "X", "memory_total_mib": 10, "memory_used_mib": 11}]', "memory_used_mib <= total"),
        ("/nonexistent/gpus.json", "does not exist"),
    ],
)
def test_simulated_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_simulated(spec)


def test_smi_csv_parsing() -> None:
    rows = parse_gpu_csv("0, NVIDIA H100 80GB HBM3, GPU-abc, 00000000:18:00.0, 81559, 4, 570.86, 9.0\n")
    assert rows[0]["name"] == "NVIDIA H100 80GB HBM3" and rows[0]["memory.total"] == "81559"
    apps = parse_apps_csv("GPU-abc, 1234, 512, python3\nGPU-abc, [N/A], [N/A], x\n")
    assert apps["GPU-abc"][0].pid == 1234 and apps["GPU-abc"][0].used_memory_mib == 512 and len(apps["GPU-abc"]) == 1


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_smi_fallback_runs_a_real_process(tmp_path: Path) -> None:
    exe = _script(
        tmp_path,
        "nvidia-smi",
        "import sys\n"
        "q = sys.argv[1]\n"
        "if q.startswith('--query-gpu'):\n"
        "    print('0, Tesla T4, GPU-t4, 00000000:3B:00.0, 15360, 3, 535.1, 7.5')\n",
    )
    inv = probe_smi(exe)
    assert inv.source == "nvidia-smi" and inv.gpus[0].name == "Tesla T4" and inv.gpus[0].compute_capability == "7.5"
    assert inv.driver_version == "535.1"


def test_smi_failure_is_typed(tmp_path: Path) -> None:
    exe = _script(tmp_path, "nvidia-smi", "import sys\nprint('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.')\nsys.exit(9)\n")
    with pytest.raises(GpuProbeError, match="could not communicate"):
        probe_smi(exe)


def test_nvml_helpers() -> None:
    assert cuda_version_text(12080) == "12.8" and cuda_version_text(13000) == "13.0"
    assert decode_cpu_mask([0b1011, 1]) == (0, 1, 3, 64)


def test_torch_check_in_a_child(tmp_path: Path) -> None:
    fake = _script(
        tmp_path,
        "python",
        "import json, os\n"
        "n = len([x for x in os.environ['CUDA_VISIBLE_DEVICES'].split(',') if x])\n"
        "print('COMFYRIG_TORCH ' + json.dumps({'python': '3.12', 'torch_version': '2.9.0+cu128', 'cuda_version': '12.8',"
        " 'cuda_available': n > 0, 'device_count': n, 'devices': []}))\n",
    )
    raw = run_torch_check(fake, {"CUDA_VISIBLE_DEVICES": "0,1"}, dict(os.environ))
    assert raw["device_count"] == 2
    assert judge_torch(fake, raw, expected_devices=2, machine_gpus=2).ok
    bad = judge_torch(fake, raw, expected_devices=1, machine_gpus=2)
    assert not bad.ok and "sees 2 device(s)" in bad.problems[0]


def test_torch_check_flags_cpu_only_build() -> None:
    report = judge_torch("py", {"torch_version": "2.9.0+cpu", "cuda_version": None, "cuda_available": False, "device_count": 0}, 2, 2)
    assert not report.ok and "CPU-only build" in report.problems[0]


def test_torch_check_missing_interpreter(tmp_path: Path) -> None:
    raw = run_torch_check(str(tmp_path / "nope"), {}, {})
    assert "does not exist" in raw["error"]
    assert not judge_torch("x", raw, 0, 0).ok
