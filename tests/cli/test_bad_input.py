"""Every class of bad input (issue 16, items 13-15) is one paragraph on stderr and a non-zero
exit: never a traceback, a hang or a silent wrong result. Each row is an input a user typed."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from ..conftest import InProcessCli

NUMBERS = [
    (["--restart-delay", "nan", "--dry-run"], "--restart-delay nan is not a finite number"),
    (["--restart-delay", "-1", "--dry-run"], "--restart-delay -1 is too small"),
    (["--ready-timeout", "nan", "--dry-run"], "--ready-timeout nan"),
    (["--ready-timeout", "0", "--dry-run"], "more than 0"),
    (["--stop-timeout", "inf", "--dry-run"], "--stop-timeout inf"),
    (["--hang-timeout", "-5", "--dry-run"], "--hang-timeout -5"),
    (["--single", "-1", "--dry-run"], "--single -1"),
    (["launch", "--workers", "--cpus-per-worker", "0", "--dry-run"], "--cpus-per-worker 0"),
    (["launch", "--workers", "--cpus-per-worker", "100000", "--dry-run"], "--cpus-per-worker 100000"),
    (["launch", "--workers", "--threads-per-worker", "-2", "--dry-run"], "--threads-per-worker -2"),
    (["launch", "--workers", "--port", "65535", "--dry-run"], "there are not that many up to 65535"),
    (["launch", "--workers", "--no-gateway", "--port", "65535", "--dry-run"], "needed from 65535 upwards"),
    (["stop", "--all", "--timeout", "-1"], "--timeout -1"),
    (["stop", "--port", "0"], "--port 0"),
    (["batch", "w.json", "--out", "o", "--job-timeout", "-5", "--dry-run"], "--job-timeout -5"),
    (["batch", "w.json", "--out", "o", "--job-timeout", "inf", "--dry-run"], "--job-timeout inf"),
    (["batch", "w.json", "--out", "o", "--ready-timeout", "nan", "--dry-run"], "--ready-timeout nan"),
    (["batch", "w.json", "--out", "o", "--retries", "-1", "--dry-run"], "--retries -1"),
    (["batch", "w.json", "--out", "o", "--repeat", "0", "--dry-run"], "--repeat 0"),
    (["plan", "m.safetensors", "--reserve", "nan"], "--reserve nan"),
    (["plan", "m.safetensors", "--reserve", "inf"], "--reserve inf"),
    (["plan", "m.safetensors", "--ram", "inf"], "--ram inf"),
    (["plan", "m.safetensors", "--batch", "0"], "--batch 0"),
    (["monitor", "--interval", "nan", "--once"], "--interval nan"),
    (["monitor", "--interval", "0", "--once"], "--interval 0"),
    (["monitor", "--count", "0"], "--count 0"),
]


def _one_paragraph(stderr: str) -> None:
    assert stderr.startswith("comfyrig: error:"), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("args", "needle"), NUMBERS, ids=[" ".join(a) for a, _ in NUMBERS])
def test_numbers(run: InProcessCli, args: list[str], needle: str) -> None:
    run.gpus(2)
    result = run(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    _one_paragraph(result.stderr)
    assert needle in result.stderr


def _safetensors(path: Path, header: dict[str, object]) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def _make(tmp: Path, kind: str, name: str) -> Path:
    """A file of ``kind`` at tmp/name: the things that hung, traced back or misled before."""
    path = tmp / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "utf-16":
        path.write_bytes("COMFYUI_PORT=9000\n".encode("utf-16"))
    return path


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_plan_model_that_is_not_a_file(run: InProcessCli, kind: str) -> None:
    run.gpus(2)
    _make(run.cwd, kind, "m.safetensors")
    result = run("plan", "m.safetensors")
    assert result.returncode == 2
    _one_paragraph(result.stderr)
    assert "m.safetensors" in result.stderr


def test_plan_model_without_tensors(run: InProcessCli) -> None:
    run.gpus(2)
    _safetensors(run.cwd / "empty.safetensors", {"__metadata__": {"format": "pt"}})
    result = run("plan", "empty.safetensors")
    assert result.returncode == 2 and "holds no tensors" in result.stderr


def test_plan_same_model_twice(run: InProcessCli) -> None:
    run.gpus(2)
    _safetensors(run.cwd / "m.safetensors", {"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}})
    with open(run.cwd / "m.safetensors", "ab") as f:
        f.write(b"\0" * 8)
    (run.cwd / "link.safetensors").symlink_to(run.cwd / "m.safetensors")
    for args in (["m.safetensors", "m.safetensors"], ["m.safetensors", "link.safetensors"]):
        result = run("plan", *args)
        assert result.returncode == 2 and "is given twice" in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "utf-16"])
def test_env_file_that_is_not_a_text_file(run: InProcessCli, kind: str) -> None:
    run.gpus(2)
    _make(run.cwd, kind, "my.env")
    result = run("config", "--env-file", "my.env")
    assert result.returncode == 2, result.stdout
    _one_paragraph(result.stderr)
    assert "--env-file" in result.stderr


def test_fake_gpus_inline_json_may_not_hold_nan(run: InProcessCli) -> None:
    result = run("gpus", env={"COMFYRIG_FAKE_GPUS": '[{"name": "A", "memory_total_mib": NaN}]'})
    assert result.returncode == 2 and "NaN is not a JSON value" in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "utf-16"])
def test_fake_gpus_file_that_is_not_a_text_file(run: InProcessCli, kind: str) -> None:
    path = _make(run.cwd, kind, "gpus.json")
    result = run("gpus", env={"COMFYRIG_FAKE_GPUS": str(path)})
    assert result.returncode == 2
    _one_paragraph(result.stderr)
    assert "COMFYRIG_FAKE_GPUS" in result.stderr


STRINGS = [
    (["--gpus", "", "--dry-run"], {}, "--gpus is empty"),
    (["launch", "--workers", "--gpus", "", "--dry-run"], {}, "--gpus is empty"),
    (["--dry-run"], {"COMFYUI_DIR": ""}, "COMFYUI_DIR is empty"),
    (["--dry-run"], {"COMFYUI_DIR": "   "}, "COMFYUI_DIR is empty"),
    (["--dry-run", "--comfyui-dir", ""], {}, "--comfyui-dir is empty"),
    (["--dry-run", "--python", ""], {}, "--python is empty"),
    (["--dry-run"], {"COMFYUI_PYTHON": ""}, "COMFYUI_PYTHON is empty"),
    (["config", "--env-file", ""], {}, "--env-file is empty"),
    (["--dry-run", "--listen", ""], {}, "--listen is ''"),
    (["--dry-run", "--port", ""], {}, "a port must be a whole number"),
    (["monitor", "--url", "notaurl", "--once"], {}, "'notaurl' is not the URL of a ComfyUI"),
    (["monitor", "--url", "", "--once"], {}, "is not the URL of a ComfyUI"),
    (["monitor", "--url", "http://", "--once"], {}, "is not the URL of a ComfyUI"),
    (["monitor", "--url", "ftp://h:1", "--once"], {}, "is not the URL of a ComfyUI"),
    (["batch", "w.json", "--out", "o", "--url", "notaurl", "--dry-run"], {}, "'notaurl' is not the URL of a ComfyUI"),
    (["batch", "w.json", "--out", "", "--url", "http://127.0.0.1:9", "--dry-run"], {}, "--out is empty"),
    (["batch", "w.json", "--out", "/", "--url", "http://127.0.0.1:9", "--dry-run"], {}, "--out / is the root folder"),
    (["batch", "w.json", "--out", "afile", "--url", "http://127.0.0.1:9", "--dry-run"], {}, "--out afile is a file, not a folder"),
    (["batch", "w.json", "--out", "afile/sub", "--url", "http://127.0.0.1:9", "--dry-run"], {}, "is a file, not a folder"),
    (["batch", "w.json", "--out", "afile/sub", "--url", "http://127.0.0.1:9"], {}, "is a file, not a folder"),
    (["--dry-run", "--log-dir", "afile/sub"], {}, "is a file, not a folder"),
    (["--dry-run", "--log-dir", "afile"], {}, "--log-dir afile is a file"),
    (["--dry-run", "--log-dir", ""], {}, "--log-dir is empty"),
]


@pytest.mark.parametrize(("args", "env", "needle"), STRINGS, ids=[" ".join(a) + repr(e) for a, e, _ in STRINGS])
def test_strings_and_paths(run: InProcessCli, args: list[str], env: dict[str, str], needle: str) -> None:
    run.gpus(2)
    (run.cwd / "w.json").write_text('{"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}')
    (run.cwd / "afile").write_text("not a folder")
    result = run(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    _one_paragraph(result.stderr)
    assert needle in result.stderr


def test_env_line_without_equals(run: InProcessCli) -> None:
    run.gpus(2)
    (run.cwd / ".env").write_text("COMFYUI_LISTEN=127.0.0.1\nCOMFYUI_PORT\n")
    result = run("config")
    assert result.returncode == 2
    _one_paragraph(result.stderr)
    assert "line 2: COMFYUI_PORT has no '='" in result.stderr


def test_cuda_visible_devices_minus_one_is_named(run: InProcessCli) -> None:
    run.gpus(2)
    result = run("--dry-run", env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert result.returncode == 0
    assert "CUDA_VISIBLE_DEVICES is -1 (no GPU)" in " ".join(result.stdout.split())


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_files_comfyrig_writes_are_checked_first(run: InProcessCli, kind: str) -> None:
    """monitor --csv on a FIFO used to wait for a reader; plan --write into a folder failed last."""
    run.gpus(2)
    _make(run.cwd, kind, "target")
    result = run("monitor", "--once", "--csv", "target")
    assert result.returncode == 2
    _one_paragraph(result.stderr)
    assert "--csv target" in result.stderr
    (run.cwd / "w.json").write_text('{"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}}}')
    result = run("plan", "x.safetensors", "--workflow", "w.json", "--write", "target")
    assert result.returncode == 2
    assert "--write target" in result.stderr


def test_written_file_under_a_missing_folder(run: InProcessCli) -> None:
    run.gpus(2)
    result = run("monitor", "--once", "--csv", "no/such/folder/gpus.csv")
    assert result.returncode == 2 and "the folder no/such/folder does not exist" in result.stderr
