"""The fake's upload routes, LoadImage, SaveImageWebsocket and binary preview frames behave as
ComfyUI 0.3.76's (server.py image_upload/send_image/send_image_with_metadata, nodes.py LoadImage,
custom_nodes/websocket_image_save.py, main.py hijack_progress, comfy_execution/progress.py).

One fake serves the module, with a base directory of its own (input, output, custom_nodes with
websocket_image_save.py) and FAKE_COMFYUI_PREVIEWS=1.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

pytestmark = [pytest.mark.xdist_group("fake-images-ws"), pytest.mark.e2e]

_FAKE_DIR = Path(__file__).resolve().parents[1] / "fake_comfyui"


def _load(name: str, path: Path):
    # tests/ is not a package: load by path, under a name of our own.
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


harness = _load("fake_comfyui_harness", _FAKE_DIR / "harness.py")
image = _load("fake_comfyui_image", _FAKE_DIR / "comfy" / "image.py")


def png(width: int, height: int, color: int) -> bytes:
    return image.png_bytes(image.solid(width, height, color), {})


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "websocket_image_save.py").write_text("")
    return base


@pytest.fixture(scope="module")
def fake(base):
    with harness.running_fake(args=["--base-directory", str(base)], env={"FAKE_COMFYUI_PREVIEWS": "1"}) as server:
        yield server


def upload(fake, name: str, content: bytes, route: str = "/upload/image", **fields):
    status, body = fake.post_multipart(route, fields, {"image": (name, content, "image/png")})
    return status, (json.loads(body) if status == 200 else body)


def recv_until(ws, until, timeout: float = 10.0) -> list:
    """Every message (dict for JSON, BinaryFrame for bytes) up to the first for which until(message)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        raw = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        message = harness.parse_binary_frame(raw) if isinstance(raw, bytes) else json.loads(raw)
        out.append(message)
        if until(message):
            return out


def done(prompt_id: str):
    return lambda m: isinstance(m, dict) and m["type"] == "executing" and m["data"]["node"] is None \
        and m["data"]["prompt_id"] == prompt_id


# --- /upload/image and /upload/mask -----------------------------------------------------------

def test_upload_names_collisions_like_comfyui(fake, base):
    assert upload(fake, "up.png", png(2, 2, 0x010101)) == (200, {"name": "up.png", "subfolder": "", "type": "input"})
    # Same name, same bytes: the file is not stored twice and keeps its name.
    assert upload(fake, "up.png", png(2, 2, 0x010101))[1]["name"] == "up.png"
    # Same name, other bytes: "name (1).ext", then "(2)".
    assert upload(fake, "up.png", png(2, 2, 0x020202))[1]["name"] == "up (1).png"
    assert upload(fake, "up.png", png(2, 2, 0x030303))[1]["name"] == "up (2).png"
    # overwrite=true (or 1) replaces.
    assert upload(fake, "up.png", png(2, 2, 0x040404), overwrite="true")[1]["name"] == "up.png"
    assert (base / "input" / "up.png").read_bytes() == png(2, 2, 0x040404)
    assert sorted(p.name for p in (base / "input").iterdir() if p.name.startswith("up")) == [
        "up (1).png", "up (2).png", "up.png"]


def test_upload_subfolder_and_types(fake, base):
    assert upload(fake, "s.png", png(1, 1, 0), subfolder="sub/deeper") == (
        200, {"name": "s.png", "subfolder": "sub/deeper", "type": "input"})
    assert (base / "input" / "sub" / "deeper" / "s.png").is_file()
    assert upload(fake, "t.png", png(1, 1, 0), type="temp")[1] == {"name": "t.png", "subfolder": "", "type": "temp"}
    assert (base / "temp" / "t.png").is_file()
    assert upload(fake, "o.png", png(1, 1, 0), type="output")[1]["type"] == "output"
    assert (base / "output" / "o.png").is_file()


@pytest.mark.parametrize("fields, files, status", [
    ({}, {}, 400),                                                     # no image part
    ({"image": "not a file"}, {}, 500),                                # a text part: ComfyUI fails too
    # No filename: aiohttp hands ComfyUI a text part, which fails as above.
    ({}, {"image": ("", b"x", "image/png")}, 500),
    ({"subfolder": "../.."}, {"image": ("x.png", b"x", "image/png")}, 400),  # outside the input dir
    ({"type": "models"}, {"image": ("x.png", b"x", "image/png")}, 500),  # ComfyUI fails on an unknown type
])
def test_upload_refusals(fake, fields, files, status):
    assert fake.post_multipart("/api/upload/image", fields, files)[0] == status


def test_upload_mask_copies_the_original_with_the_masks_alpha(fake, base):
    upload(fake, "orig.png", png(3, 2, 0x112233))
    mask = image.png_bytes_rgba(image.solid(3, 2, 0), bytes([0, 50, 100, 150, 200, 255]), {})
    ref = json.dumps({"filename": "orig.png", "subfolder": "", "type": "input"})
    status, answer = upload(fake, "clipspace-mask.png", mask, route="/upload/mask", original_ref=ref, type="input")
    assert (status, answer) == (200, {"name": "clipspace-mask.png", "subfolder": "", "type": "input"})
    written = image.decode_png((base / "input" / "clipspace-mask.png").read_bytes())
    assert written.frame.rgb == bytes((0x11, 0x22, 0x33)) * 6
    assert written.alpha == bytes([0, 50, 100, 150, 200, 255])
    # A missing original writes nothing, and the answer is 200 all the same (as in ComfyUI).
    ref = json.dumps({"filename": "nowhere.png", "type": "input"})
    assert upload(fake, "lost-mask.png", mask, route="/upload/mask", original_ref=ref)[0] == 200
    assert not (base / "input" / "lost-mask.png").exists()


# --- LoadImage --------------------------------------------------------------------------------

def test_object_info_lists_the_input_images_now(fake):
    upload(fake, "listed.png", png(1, 1, 0x0A0B0C))
    spec = fake.get_json("/object_info/LoadImage")["LoadImage"]
    files, options = spec["input"]["required"]["image"]
    assert "listed.png" in files and files == sorted(files) and options == {"image_upload": True}
    assert (spec["output"], spec["display_name"], spec["category"]) == (["IMAGE", "MASK"], "Load Image", "image")
    assert not [f for f in files if "/" in f]  # top level only, as ComfyUI lists it


def test_an_uploaded_image_runs_through_a_workflow(fake, base):
    name = upload(fake, "workflow-in.png", png(5, 3, 0x204060))[1]["name"]
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
              "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "loaded"}}}
    fake.post_json("/prompt", {"prompt": prompt, "prompt_id": "load-1"})
    entry = harness.wait_until(lambda: fake.get_json("/history/load-1").get("load-1"), 10, "the LoadImage job")
    assert entry["status"]["status_str"] == "success"
    [saved] = entry["outputs"]["3"]["images"]
    width, height, rgb, _ = harness.decode_png((base / "output" / saved["filename"]).read_bytes())
    assert (width, height, rgb) == (5, 3, bytes((0xDF, 0xBF, 0x9F)) * 15)


def test_load_image_refuses_a_missing_file_at_validation(fake):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "never-uploaded.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    status, raw = fake.request("POST", "/prompt", {"prompt": prompt})
    assert status == 400
    assert json.loads(raw)["node_errors"]["1"]["errors"] == [{
        "type": "custom_validation_failed", "message": "Custom validation failed for node",
        "details": "image - Invalid image file: never-uploaded.png", "extra_info": {"input_name": "image"}}]


def test_load_image_fails_clearly_on_what_it_cannot_read(fake, base):
    (base / "input").mkdir(exist_ok=True)
    (base / "input" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not decoded by the fake")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.jpg"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    fake.post_json("/prompt", {"prompt": prompt, "prompt_id": "jpg-1"})
    entry = harness.wait_until(lambda: fake.get_json("/history/jpg-1").get("jpg-1"), 10, "the failing job")
    error = next(data for kind, data in entry["status"]["messages"] if kind == "execution_error")
    assert error["node_type"] == "LoadImage" and "reads PNG only" in error["exception_message"]


# --- SaveImageWebsocket and previews ----------------------------------------------------------

def ws_prompt(color: int, sleep_steps: int = 0) -> dict:
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 2, "color": color}},
              "3": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    if sleep_steps:
        prompt["2"] = {"class_type": "FakeSleep", "inputs": {"seconds": 0.0, "steps": sleep_steps, "any": ["1", 0]}}
        prompt["3"]["inputs"]["images"] = ["2", 0]
    return prompt


def test_save_image_websocket_sends_type_1_png_frames_to_a_plain_client(fake):
    assert fake.get_json("/object_info/SaveImageWebsocket")["SaveImageWebsocket"]["python_module"] == \
        "custom_nodes.websocket_image_save"
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=plain") as ws:
        fake.post_json("/prompt", {"prompt": ws_prompt(0x336699), "prompt_id": "wsimg-1", "client_id": "plain"})
        messages = recv_until(ws, done("wsimg-1"))
    frames = [m for m in messages if isinstance(m, harness.BinaryFrame)]
    assert [(f.event, f.image_format) for f in frames] == [(1, 2), (1, 2)]  # PREVIEW_IMAGE, PNG
    assert harness.decode_png(frames[0].image)[:3] == (2, 2, bytes((0x33, 0x66, 0x99)) * 4)
    # Through the progress hook, as in ComfyUI: progress 0/2 and 1/2 before each image.
    kinds = [m["type"] if isinstance(m, dict) else "binary" for m in messages if not (
        isinstance(m, dict) and m["type"] == "progress_state")]
    assert kinds[kinds.index("executing") + 1:] == [
        "executing", "progress", "binary", "progress", "binary", "execution_success", "status", "executing"]
    assert "executed" not in kinds  # nothing in the history's outputs either


def test_previews_follow_the_clients_feature_flags(fake):
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=plain-2") as ws:
        fake.post_json("/prompt", {"prompt": ws_prompt(0x010203, sleep_steps=2), "prompt_id": "prev-1",
                                   "client_id": "plain-2"})
        plain = recv_until(ws, done("prev-1"))
    with connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=modern") as ws:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        recv_until(ws, lambda m: isinstance(m, dict) and m["type"] == "feature_flags")
        fake.post_json("/prompt", {"prompt": ws_prompt(0x010204, sleep_steps=2), "prompt_id": "prev-2",
                                   "client_id": "modern"})
        modern = recv_until(ws, done("prev-2"))

    def trace(messages):
        out = []
        for m in messages:
            if isinstance(m, harness.BinaryFrame):
                out.append(f"binary {m.event}")
            elif m["type"] == "progress":
                out.append(f"progress {m['data']['node']} {m['data']['value']}")
        return out

    # Type 1 after progress for a plain client; type 4 before it for one announcing supports_preview_metadata.
    assert trace(plain) == ["progress 2 1", "binary 1", "progress 2 2", "binary 1",
                            "progress 3 0", "binary 1", "progress 3 1", "binary 1"]
    assert trace(modern) == ["binary 4", "progress 2 1", "binary 4", "progress 2 2",
                             "binary 4", "progress 3 0", "binary 4", "progress 3 1"]
    # FakeSleep's previews are JPEG as a sampler's (image type 1, image/jpeg), SaveImageWebsocket's PNG.
    sleep_preview, saved = [m for m in modern if isinstance(m, harness.BinaryFrame)][1:3]
    assert sleep_preview.metadata == {"node_id": "2", "prompt_id": "prev-2", "display_node_id": "2",
                                      "parent_node_id": None, "real_node_id": "2", "image_type": "image/jpeg"}
    assert sleep_preview.image == image.jpeg_solid_grey(8, 8, 255)
    assert saved.metadata["image_type"] == "image/png" and saved.metadata["node_id"] == "3"
    assert harness.decode_png(saved.image)[:2] == (2, 2)
    plain_frames = [m for m in plain if isinstance(m, harness.BinaryFrame)]
    assert [(f.image_format, f.image) for f in plain_frames[:2]] == [
        (1, image.jpeg_solid_grey(8, 8, 128)), (1, image.jpeg_solid_grey(8, 8, 255))]
    assert [f.image_format for f in plain_frames[2:]] == [2, 2]


def test_without_the_knob_fake_sleep_sends_no_previews(tmp_path):
    args = ["--base-directory", str(tmp_path), "--input-directory", str(tmp_path / "elsewhere")]
    with harness.running_fake(args=args) as fake, connect(f"ws://127.0.0.1:{fake.port}/ws?clientId=c") as ws:
        # --input-directory moves where uploads go and what LoadImage lists.
        assert upload(fake, "moved.png", png(1, 1, 0))[0] == 200
        assert (tmp_path / "elsewhere" / "moved.png").is_file()
        assert fake.get_json("/object_info/LoadImage")["LoadImage"]["input"]["required"]["image"][0] == ["moved.png"]
        prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
                  "2": {"class_type": "FakeSleep", "inputs": {"seconds": 0.0, "steps": 2, "any": ["1", 0]}},
                  "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "n"}}}
        fake.post_json("/prompt", {"prompt": prompt, "prompt_id": "np-1", "client_id": "c"})
        messages = recv_until(ws, done("np-1"))
        assert not [m for m in messages if isinstance(m, harness.BinaryFrame)]
        # No websocket_image_save.py in this base directory's custom_nodes: no SaveImageWebsocket.
        assert fake.get_json("/object_info/SaveImageWebsocket") == {}
