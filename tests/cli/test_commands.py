"""The ``comfyrig`` command as a user types it, on simulated GPUs, answered in this process
(``run``); the entry points themselves run as processes in test_installed.py and below."""

import json
import sys
from pathlib import Path

import pytest

from ..conftest import Cli, InProcessCli, fake_gpus


def test_gpus_json_report(cli: InProcessCli) -> None:
    cli.gpus(2)
    result = cli("gpus", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "multi" and report["cuda_visible_devices"] == "0,1" and report["torch"] is None
    assert [g["selected"] for g in report["gpus"]] == [True, True]
    assert set(report["gpus"][0]) >= {"index", "name", "uuid", "pci_bus_id", "memory_total_mib", "memory_free_mib", "selected"}


def test_gpus_panel_plain_text(cli: InProcessCli) -> None:
    cli.gpus(2)
    result = cli("gpus", "--dual")
    assert result.returncode == 0
    assert "🎮 Dual GPU Mode" in result.stdout and "CUDA_VISIBLE_DEVICES: 0,1" in result.stdout
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe


def test_gpus_torch_check_with_a_child_interpreter(cli: InProcessCli, tmp_path: Path) -> None:
    fake = tmp_path / "py"
    fake.write_text(
        "#!/bin/sh\necho 'COMFYRIG_TORCH {\"python\": \"3.12\", \"torch_version\": \"2.9.0+cpu\", \"cuda_version\": null, \"cuda_available\": false, \"device_count\": 0}'\n"
    )
    fake.chmod(0o755)
    cli.gpus(2)
    result = cli("gpus", "--json", "--torch-check", "--python", str(fake))
    report = json.loads(result.stdout)
    assert result.returncode == 1 and "CPU-only build" in report["torch"]["problems"][0]


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_dry_run_every_mode(cli: InProcessCli, count: int) -> None:
    cli.gpus(count)
    result = cli("--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    expected = {0: "cpu", 1: "single", 2: "multi", 4: "multi"}[count]
    assert plan["mode"] == expected
    (inst,) = plan["instances"]
    assert inst["argv"][1:6] == ["main.py", "--listen", "127.0.0.1", "--port", "8188"]
    assert inst["env"]["CUDA_VISIBLE_DEVICES"] == ",".join(str(i) for i in range(count))
    assert ("--cpu" in inst["argv"]) == (count == 0)


def test_dry_run_extra_args_and_dotenv(cli: InProcessCli, comfy_tree: Path) -> None:
    cli.gpus(2)
    (comfy_tree / ".env").write_text("CUDA_VISIBLE_DEVICES=1\nCOMFYUI_PORT=8190\nCOMFYUI_ARGS=--lowvram\nHF_HOME=/x\n")
    result = cli("launch", "--dry-run", "--json", "--comfyui-dir", str(comfy_tree), "--python", sys.executable,
                 "--", "--preview-method", "auto")
    plan = json.loads(result.stdout)
    (inst,) = plan["instances"]
    assert plan["mode"] == "single" and inst["cuda_visible_devices"] == "1" and inst["port"] == 8190
    assert inst["argv"][-3:] == ["--lowvram", "--preview-method", "auto"]
    assert inst["env"]["HF_HOME"] == "/x" and inst["cwd"] == str(comfy_tree.resolve())


def test_config_json_sources(cli: InProcessCli, comfy_tree: Path) -> None:
    (cli.cwd / ".env").write_text("COMFYUI_PORT=8200\nHF_TOKEN=secret\n")
    result = cli("config", "--json", "--listen", "127.0.0.5", env={"COMFYUI_ARGS": "--lowvram"})
    settings = json.loads(result.stdout)["settings"]
    assert settings["COMFYUI_PORT"] == {"value": 8200, "source": ".env:1"}
    assert settings["COMFYUI_LISTEN"] == {"value": "127.0.0.5", "source": "cli"}
    assert settings["COMFYUI_ARGS"] == {"value": "--lowvram", "source": "env"}
    assert settings["HF_TOKEN"] == {"value": "****", "source": ".env:2"}


def test_config_table(cli: InProcessCli) -> None:
    result = cli("config")
    assert result.returncode == 0 and "COMFYUI_PORT" in result.stdout and "default" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["gpus", "--single", "5"], {}, "there is no GPU 5"),
        (["gpus", "--gpus", "0,0"], {}, "same GPU twice"),
        (["gpus", "--gpus", "0,,1"], {}, "empty item"),
        (["gpus", "--gpus", "GPU-nothere"], {}, "no GPU has the UUID"),
        (["--dual", "--multi", "--dry-run"], {}, "Choose one GPU mode"),
        (["--port", "70000", "--dry-run"], {}, "1 to 65535"),
        (["--dry-run"], {"COMFYUI_DIR": "/nonexistent"}, "does not exist"),
        (["--dry-run", "--python", "/no/python"], {}, "does not exist"),
    ],
)
def test_bad_input_is_one_paragraph(cli: InProcessCli, args: list[str], env: dict[str, str], needle: str) -> None:
    cli.gpus(2)
    result = cli(*args, env=env)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("comfyrig: error:")


def test_dual_with_one_gpu(cli: InProcessCli) -> None:
    cli.gpus(1)
    result = cli("--dual", "--dry-run")
    assert result.returncode == 2 and "--dual needs two GPUs" in result.stderr


def test_bad_dotenv_line(cli: InProcessCli) -> None:
    (cli.cwd / ".env").write_text("COMFYUI_PORT=8188\nnot valid\n")
    result = cli("config")
    assert result.returncode == 2 and ".env, line 2" in result.stderr


def test_comfyui_dir_without_main(cli: InProcessCli, tmp_path: Path) -> None:
    result = cli("--dry-run", "--comfyui-dir", str(tmp_path))
    assert result.returncode == 2 and "has no main.py" in result.stderr


def test_no_comfyui_yet_shows_panel_plan_and_how_to_get_it(cli: InProcessCli) -> None:
    cli.gpus(2)
    result = cli()
    assert result.returncode == 0
    assert "GPU Configuration" in result.stdout and "Launch plan" in result.stdout
    flat = " ".join(result.stdout.split())
    assert "No ComfyUI found" in flat and "--comfyui-dir DIR" in flat and "comfyrig install" in flat


@pytest.mark.e2e
def test_module_entry_point(cli: InProcessCli) -> None:  # a real process: 'python -m comfyrig' is the point
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "comfyrig", "--version"], capture_output=True, text=True, env=cli.env, check=False)
    assert result.returncode == 0 and result.stdout.startswith("comfyrig ")


def test_workers_dry_run_places_cpus(cli: InProcessCli) -> None:
    import os

    cpus = sorted(os.sched_getaffinity(0))
    gpus = fake_gpus(2)
    for gpu in gpus:
        gpu["cpu_affinity"] = cpus
    cli.env["COMFYRIG_FAKE_GPUS"] = json.dumps(gpus)
    plan = json.loads(cli("--workers", "--dry-run", "--json").stdout)
    assert [i["cuda_visible_devices"] for i in plan["instances"]] == ["0", "1"]
    placed = [i["cpus"] for i in plan["instances"]]
    assert (all(placed) and placed[0] != placed[1]) or len(cpus) == 1
    none = json.loads(cli("--workers", "--dry-run", "--json", "--placement", "none").stdout)
    assert [i["cpus"] for i in none["instances"]] == [None, None]
    bad = cli("--workers", "--dry-run", "--placement", "none", "--threads-per-worker", "2")
    assert bad.returncode == 2 and "need --placement auto" in bad.stderr


@pytest.mark.parametrize("args", [["bogus"], ["launch", "--dry-run", "lowvram"], ["doctor", "--no-torch", "stray"]])
def test_typos_are_not_passed_to_comfyui(cli: InProcessCli, args: list[str]) -> None:
    cli.gpus(1)
    result = cli(*args)
    assert result.returncode == 2 and result.stderr.startswith("comfyrig: error:")
    assert "after --" in result.stderr and "Traceback" not in result.stderr


def test_flags_after_dashes_reach_comfyui(cli: InProcessCli) -> None:
    cli.gpus(1)
    plan = json.loads(cli("launch", "--dry-run", "--json", "--", "--lowvram", "extra-value").stdout)
    assert plan["instances"][0]["argv"][-2:] == ["--lowvram", "extra-value"]


@pytest.fixture
def cli(run: InProcessCli) -> Cli:
    return run
