from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyrig.cli import main
from tests.conftest import TWO_3090


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No comfyrig variables from the developer's shell, no .env, a port where nothing listens."""
    for key in ("CUDA_VISIBLE_DEVICES", "COMFYUI_PORT", "COMFYUI_LISTEN", "COMFYUI_ARGS", "COMFYUI_DIR",
                "COMFYUI_PYTHON", "ENABLE_COMFYUI_MANAGER", "PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF",
                "CUDA_DEVICE_ORDER", "VIRTUAL_ENV", "COMFYRIG_FAKE_GPUS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMFYRIG_STATE_DIR", str(tmp_path / "state"))  # never the developer's registry
    monkeypatch.setenv("COMFYUI_PORT", str(free_port()))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    yield monkeypatch


@pytest.fixture
def fake_gpus(clean_env: pytest.MonkeyPatch) -> dict[str, Any]:
    data = json.loads(json.dumps(TWO_3090))
    clean_env.setenv("COMFYRIG_FAKE_GPUS", json.dumps(data))
    return data


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
