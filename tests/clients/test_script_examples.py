"""ComfyUI's own ``script_examples/`` run as they are, against each target.

The scripts hard-code ``127.0.0.1:8188`` and an SD1.5 checkpoint workflow. The test reads them
from a real checkout (the target's own, else the first of COMFYUI_DIRS), changes only literals by
plain text replacement, writes the copy to tmp_path and runs it with this interpreter:

- ``127.0.0.1:8188`` -> the target's ``HOST:PORT``;
- the body of ``prompt_text = \"\"\"...\"\"\"`` -> an image-only prompt (EmptyImage -> ImageInvert ->
  SaveImage, or SaveImageWebsocket under the node id ``save_image_websocket_node`` the ws_images
  script looks for);
- the two lines setting ``prompt["6"]`` text and ``prompt["3"]`` seed -> comments;
- the websocket scripts get one line appended that prints the ``images`` they collected as JSON.

Each replacement must match, so a change in a newer script fails here instead of testing nothing.
They need the ``websocket-client`` package (``pip install websocket-client``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import completed, image_workflow, is_png, output_images, view
from .targets import Running, get_json, module_available, real_checkout_for_scripts

pytestmark = [pytest.mark.clients, pytest.mark.e2e]

TEXT_LINE = 'prompt["6"]["inputs"]["text"] = "masterpiece best quality man"'
SEED_LINE = 'prompt["3"]["inputs"]["seed"] = 5'
PRINT_IMAGES = ('\nimport base64 as _b64, json as _json\n'
                'print("IMAGES " + _json.dumps({k: [_b64.b64encode(i).decode() for i in v] for k, v in images.items()}))\n')


def patched(source: str, host_port: str, prompt: dict[str, Any], print_images: bool) -> str:
    assert "127.0.0.1:8188" in source and TEXT_LINE in source and SEED_LINE in source, "the script changed"
    start = source.index('prompt_text = """') + len('prompt_text = """')
    end = source.index('"""', start)
    source = source[:start] + "\n" + json.dumps(prompt, indent=4) + "\n" + source[end:]
    source = source.replace("127.0.0.1:8188", host_port)
    source = source.replace(TEXT_LINE, "# (text prompt line removed by the test)")
    source = source.replace(SEED_LINE, "# (seed line removed by the test)")
    return source + (PRINT_IMAGES if print_images else "")


def run_script(target: Running, tmp_path: Path, name: str, prompt: dict[str, Any], print_images: bool) -> str:
    if not module_available("websocket"):
        pytest.skip("ComfyUI's script_examples need websocket-client (pip install websocket-client)")
    checkout = real_checkout_for_scripts(target)
    if checkout is None:
        pytest.skip("script_examples are read from a real checkout: set COMFYUI_DIRS (tests/real_comfyui.py)")
    source = (checkout / "script_examples" / name).read_text()
    script = tmp_path / name
    script.write_text(patched(source, f"{target.host}:{target.port}", prompt, print_images))
    done = subprocess.run([sys.executable, str(script)], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def printed_images(stdout: str) -> dict[str, list[bytes]]:
    line = next(line for line in stdout.splitlines() if line.startswith("IMAGES "))
    return {node: [base64.b64decode(i) for i in images] for node, images in json.loads(line[7:]).items()}


def test_basic_api_example_queues_a_prompt_that_completes(target: Running, tmp_path: Path) -> None:
    prefix = f"basic_{uuid.uuid4().hex[:8]}"
    run_script(target, tmp_path, "basic_api_example.py", image_workflow(prefix), print_images=False)
    # The script only queues (no prompt id printed): find its entry by the unique filename prefix.
    entry: dict[str, Any] = {}
    for _ in range(600):
        entry = next((e for e in get_json(f"{target.url}/history").values() if prefix in json.dumps(e.get("prompt"))), {})
        if entry:
            break
        time.sleep(0.2)
    assert completed(entry), entry
    (image,) = output_images(entry)
    assert is_png(view(target.url, image))


def test_websockets_api_example_gets_its_images_through_history(target: Running, tmp_path: Path) -> None:
    images = printed_images(run_script(target, tmp_path, "websockets_api_example.py",
                                       image_workflow(f"wsapi_{uuid.uuid4().hex[:8]}"), print_images=True))
    assert list(images) == ["9"] and len(images["9"]) == 1 and is_png(images["9"][0])


def test_websockets_ws_images_example_gets_png_frames(target: Running, tmp_path: Path) -> None:
    target.require("ws_images")
    prompt = image_workflow("unused", save="SaveImageWebsocket")
    prompt["save_image_websocket_node"] = prompt.pop("9")
    images = printed_images(run_script(target, tmp_path, "websockets_api_example_ws_images.py", prompt, print_images=True))
    assert list(images) == ["save_image_websocket_node"]
    assert images["save_image_websocket_node"] and all(is_png(i) for i in images["save_image_websocket_node"])


def test_patching_changes_only_the_literals() -> None:
    script = ('server_address = "127.0.0.1:8188"\nprompt_text = """\n{"3": {}}\n"""\nprompt = json.loads(prompt_text)\n'
              f"{TEXT_LINE}\n{SEED_LINE}\nimages = get_images(ws, prompt)\n")
    out = patched(script, "10.0.0.9:1234", {"9": {"class_type": "SaveImage"}}, print_images=True)
    assert 'server_address = "10.0.0.9:1234"' in out and "8188" not in out
    assert TEXT_LINE not in out and SEED_LINE not in out and "images = get_images(ws, prompt)" in out
    body = out.split('prompt_text = """', 1)[1].split('"""', 1)[0]
    assert json.loads(body) == {"9": {"class_type": "SaveImage"}}
    assert out.rstrip().splitlines()[-1].startswith('print("IMAGES "')
    with pytest.raises(AssertionError, match="the script changed"):
        patched(script.replace(SEED_LINE, "prompt['3']['inputs']['seed'] = 6"), "h:1", {}, print_images=False)
