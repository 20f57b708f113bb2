"""comfy-cli's ``comfy run --workflow F --host H --port P --wait`` against each target.

comfy-cli is found as ``$COMFY_CLI`` (the ``comfy`` executable), else ``comfy`` on PATH; install it
in a venv of its own (``python -m venv V && V/bin/pip install comfy-cli``): its dependencies are
many and pinned. It runs with ``--json`` (NDJSON events, a final envelope) and a HOME of its own
under tmp_path, so it neither prompts nor touches the user's comfy-cli config.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import image_workflow, is_png
from .targets import Running

pytestmark = [pytest.mark.clients, pytest.mark.e2e]


def comfy_cli() -> str:
    exe = os.environ.get("COMFY_CLI") or shutil.which("comfy")
    if not exe or not Path(exe).is_file():
        pytest.skip("comfy-cli not installed: set COMFY_CLI to its 'comfy' executable (pip install comfy-cli in a venv)")
    return exe


def comfy_run(target: Running, tmp_path: Path, workflow: dict[str, Any]) -> list[dict[str, Any]]:
    exe = comfy_cli()
    path = tmp_path / f"wf-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(workflow))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFY_", "XDG_"))} | {"HOME": str(tmp_path / "home")}
    done = subprocess.run([exe, "--skip-prompt", "--no-enable-telemetry", "run", "--workflow", str(path),
                           "--host", target.host, "--port", str(target.port), "--wait", "--json", "--where", "local",
                           "--timeout", "120"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return events


def test_comfy_run_waits_for_the_prompt_and_its_images(target: Running, tmp_path: Path) -> None:
    events = comfy_run(target, tmp_path, image_workflow(f"cli_{uuid.uuid4().hex[:8]}"))
    envelope = events[-1]
    assert envelope["type"] == "envelope" and envelope["ok"] is True, envelope
    data = envelope["data"]
    assert data["status"] == "completed" and data["prompt_id"]
    queued = next(e for e in events if e["type"] == "queued")
    assert queued["prompt_id"] == data["prompt_id"]
    assert "9" in data["executed_node_ids"]
    (url,) = data["outputs_by_node"]["9"]
    assert url.startswith(target.url + "/view?")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert is_png(response.read())


def test_comfy_run_of_an_already_run_workflow_still_completes(target: Running, tmp_path: Path) -> None:
    workflow = image_workflow(f"cli_{uuid.uuid4().hex[:8]}")
    first = comfy_run(target, tmp_path, workflow)[-1]["data"]
    second = comfy_run(target, tmp_path, workflow)[-1]["data"]
    assert first["status"] == second["status"] == "completed"
    assert first["prompt_id"] != second["prompt_id"]
