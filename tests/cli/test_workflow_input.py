"""One workflow loader behind ``comfyrig batch`` and ``comfyrig plan --workflow``, in-process.

Both read the same formats (API; ``{"prompt": ...}`` as POST /prompt takes it;
the UI format, converted by batch with a server's /object_info and refused by
plan) and give the same one-paragraph error for every bad input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import run_cli
from tests.comfy.test_convert import OBJECT_INFO
from tests.comfy.test_workflow import BAD_FILES, write_bad
from tests.conftest import json_server
from tests.fit.layouts import sdxl_checkpoint_layout, write_sparse_safetensors

API = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
UI = {
    "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [], "widgets_values": [8, 8, 1, 0], "title": "Canvas"},
        {"id": 2, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "widgets_values": ["x"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
}
CHECKPOINT = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}}}
NOWHERE = "http://127.0.0.1:9"  # never contacted: these inputs fail (or need no server) before that


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_error(result: tuple[int, str, str], *needles: str) -> None:
    code, out, err = result
    assert code == 2, (out, err)
    assert err.startswith("comfyrig: error: ") and "Traceback" not in out + err
    for needle in needles:
        assert flat(needle) in flat(err), flat(err)


@pytest.fixture
def object_info_server() -> Iterator[str]:
    """A loopback server answering GET /prompt and /object_info, as a running ComfyUI would."""
    bodies: dict[str, Any] = {"/prompt": {"exec_info": {"queue_remaining": 0}}, "/object_info": OBJECT_INFO}
    with json_server(lambda path: (200, bodies[path]) if path in bodies else (404, {})) as (url, _):
        yield url


@pytest.fixture
def comfy_dir(fake_gpus: dict[str, Any], tmp_path: Path) -> Path:
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("")
    write_sparse_safetensors(comfy / "models" / "checkpoints" / "sdxl.safetensors", sdxl_checkpoint_layout())
    return comfy


@pytest.mark.parametrize("name, content, expected", BAD_FILES, ids=[n for n, _, _ in BAD_FILES])
@pytest.mark.parametrize("command", ["batch", "plan"])
def test_every_bad_input_gives_the_same_error_in_both_commands(
    command: str, name: str, content: bytes | None, expected: str,
    fake_gpus: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_bad(tmp_path / "w.json", name, content)
    if command == "batch":
        args = ["batch", str(path), "--out", str(tmp_path / "out"), "--url", NOWHERE, "--dry-run"]
    else:
        args = ["plan", "--workflow", str(path)]
    assert_error(run_cli(capsys, *args), expected.format(path=path))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", ["api", "prompt"])
def test_api_format_and_post_prompt_body_are_read_by_both(
    shape: str, comfy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrap: Any = (lambda wf: wf) if shape == "api" else (lambda wf: {"prompt": wf, "client_id": "me", "extra_data": {}})
    batch_wf, plan_wf = tmp_path / "batch.json", tmp_path / "plan.json"
    batch_wf.write_text(json.dumps(wrap(API)))
    plan_wf.write_text(json.dumps(wrap(CHECKPOINT)))
    code, out, err = run_cli(capsys, "batch", str(batch_wf), "--out", str(tmp_path / "out"), "--url", NOWHERE,
                             "--sweep", "1.color=1|2", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["jobs"] == 2
    code, out, err = run_cli(capsys, "plan", "--workflow", str(plan_wf), "--comfyui-dir", str(comfy_dir),
                             "--write", str(tmp_path / "new.json"))
    assert code == 0, err
    assert "Fits on one GPU" in out
    assert json.loads((tmp_path / "new.json").read_text()) == CHECKPOINT  # written in the API format


def test_ui_format_is_converted_by_batch_with_a_server(
    object_info_server: str, fake_gpus: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps(UI))
    code, out, err = run_cli(capsys, "batch", str(ui), "--out", str(tmp_path / "out"), "--url", object_info_server,
                             "--sweep", "Canvas.color=1|2|3", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["jobs"] == 3 and plan["first"][0]["values"] == {"1.color": 1}


def test_ui_format_is_refused_where_no_server_converts_it(
    comfy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps(UI))
    export = "In ComfyUI, open the workflow and choose Workflow > Export (API)"
    assert_error(
        run_cli(capsys, "plan", "--workflow", str(ui)),
        f"The workflow {ui} is in ComfyUI's UI format (what Save writes); comfyrig plan reads the API format only",
        export,
    )
    # batch --dry-run starts no ComfyUI, so without --url there is no /object_info to convert with.
    assert_error(
        run_cli(capsys, "batch", str(ui), "--out", str(tmp_path / "out"), "--dry-run", "--comfyui-dir", str(comfy_dir),
                "--python", sys.executable),
        f"The workflow {ui} is in ComfyUI's UI format (what Save writes); converting it needs a running ComfyUI's /object_info",
        "Pass --url of a running ComfyUI to --dry-run. Or: in ComfyUI, open the workflow",
    )
