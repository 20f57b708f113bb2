"""How three applications talk to ComfyUI, re-implemented from their source, against each target.

- Open WebUI (``backend/open_webui/utils/images/comfyui.py``, aiohttp): websocket
  ``/ws?clientId=C`` with a ``Bearer`` header, ``POST /prompt {prompt, client_id}``, waits for
  ``executing`` with ``node: null`` and its prompt_id (binary frames skipped), then
  ``/history/{id}``, and ``/view`` URLs of SaveImage/PreviewImage outputs; edits upload the input
  image with a multipart ``POST /api/upload/image`` (fields ``image`` and ``type=input``).
- SillyTavern (``src/endpoints/stable-diffusion.js``, comfy part): no websocket and no client_id:
  ``POST /prompt`` with a text body ``{"prompt": ...}``, polls the whole ``GET /history`` every
  100 ms until its id appears, fails on ``status_str == "error"``, fetches the first image with
  ``/view?filename=..&subfolder=..&type=..`` (not URL-encoded).
- Krita AI Diffusion (``ai_diffusion/backend/comfy_client.py``, websockets): its own client id
  and its own ``prompt_id`` per job (a different id in the answer is an error), one websocket;
  it tracks one active job from ``execution_start`` to ``executing`` with ``node: null`` and
  expects the events of its jobs, in order, one job after the other. Its images come as binary
  PNG frames (type 1, format 2) when the target has SaveImageWebsocket, else through /view.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import urllib.request
import uuid
from typing import Any

import aiohttp
import pytest
import websockets

from .conftest import completed, image_workflow, is_png, output_images, view
from .targets import Running, get_json

pytestmark = [pytest.mark.clients, pytest.mark.e2e]

TIMEOUT = 120.0  # s for one prompt; real ComfyUI on 2 busy cores


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


# --- Open WebUI ---------------------------------------------------------------------------------

async def open_webui_wait(ws: aiohttp.ClientWebSocketResponse, prompt_id: str) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            message = json.loads(msg.data)
            if message["type"] == "executing":
                data = message["data"]
                if data["node"] is None and data["prompt_id"] == prompt_id:
                    return  # execution is done
        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise AssertionError(f"websocket closed: {msg.type}")
        # binary messages (previews) are skipped


async def open_webui_generate(url: str, workflow: dict[str, Any]) -> list[bytes]:
    client_id = str(uuid.uuid4())
    headers = {"Authorization": "Bearer "}  # its COMFYUI_API_KEY, empty when unset
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{ws_url(url)}/ws?clientId={client_id}", headers=headers) as ws:
            async with session.post(f"{url}/prompt", json={"prompt": workflow, "client_id": client_id},
                                    headers=headers) as r:
                r.raise_for_status()
                prompt_id = (await r.json())["prompt_id"]
            await asyncio.wait_for(open_webui_wait(ws, prompt_id), TIMEOUT)
        async with session.get(f"{url}/history/{prompt_id}", headers=headers) as r:
            r.raise_for_status()
            history = (await r.json())[prompt_id]
        images = []
        for node_id, output in history["outputs"].items():
            if workflow.get(node_id, {}).get("class_type") in ("SaveImage", "PreviewImage"):
                for image in output.get("images", []):
                    images.append(view(url, image))  # Open WebUI hands these /view URLs to the browser
        return images


async def open_webui_upload(url: str, name: str, data: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    form.add_field("type", "input")
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/upload/image", data=form) as r:
        r.raise_for_status()
        return await r.json()  # type: ignore[no-any-return]


def test_open_webui_generates_an_image(target: Running) -> None:
    images = asyncio.run(open_webui_generate(target.url, image_workflow(f"owui_{uuid.uuid4().hex[:8]}")))
    assert len(images) == 1 and is_png(images[0])


def test_open_webui_edits_an_uploaded_image(target: Running) -> None:
    target.require("upload")
    (source,) = asyncio.run(open_webui_generate(target.url, image_workflow(f"owui_{uuid.uuid4().hex[:8]}")))
    uploaded = asyncio.run(open_webui_upload(target.url, f"owui_{uuid.uuid4().hex[:8]}.png", source))
    assert uploaded["type"] == "input" and uploaded["name"].endswith(".png")
    edit = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded["name"]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "owui_edit"}},
    }
    (edited,) = asyncio.run(open_webui_generate(target.url, edit))
    assert is_png(edited)


# --- SillyTavern --------------------------------------------------------------------------------

def sillytavern_generate(url: str, workflow: dict[str, Any]) -> bytes:
    get_json(f"{url}/system_stats")  # its "ping"
    assert "SaveImage" in get_json(f"{url}/object_info")  # it reads the whole object_info for model lists
    body = json.dumps({"prompt": workflow}).encode()  # fetch() with a string body: text/plain
    req = urllib.request.Request(f"{url}/prompt", data=body, method="POST",
                                 headers={"Content-Type": "text/plain;charset=UTF-8"})
    with urllib.request.urlopen(req, timeout=30) as r:
        prompt_id = json.loads(r.read())["prompt_id"]
    deadline = time.monotonic() + TIMEOUT
    while (item := get_json(f"{url}/history").get(prompt_id)) is None:
        assert time.monotonic() < deadline, f"{prompt_id} never reached /history"
        time.sleep(0.1)
    assert item["status"]["status_str"] != "error", item["status"]
    info = next(image for output in item["outputs"].values() for image in output.get("images", []))
    with urllib.request.urlopen(f"{url}/view?filename={info['filename']}&subfolder={info['subfolder']}"
                                f"&type={info['type']}", timeout=30) as r:
        return r.read()  # type: ignore[no-any-return]


def test_sillytavern_polls_history_and_gets_the_image(target: Running) -> None:
    assert is_png(sillytavern_generate(target.url, image_workflow(f"st_{uuid.uuid4().hex[:8]}")))


# --- Krita AI Diffusion -------------------------------------------------------------------------

def png_frame(frame: bytes) -> bytes | None:
    """The PNG of a binary websocket frame (event type 1 = preview image, format 2 = PNG)."""
    if len(frame) > 8 and struct.unpack(">II", frame[:8]) == (1, 2):
        return frame[8:]
    return None


async def krita_listen(sock: Any, jobs: dict[str, dict[str, Any]]) -> list[str]:
    """Krita's listener: one active job at a time, from execution_start to executing(node=None)."""
    active: str | None = None
    finished: list[str] = []
    while len(finished) < len(jobs):
        msg = await sock.recv()
        if isinstance(msg, bytes):
            if active is not None and (png := png_frame(msg)) is not None:
                jobs[active]["images"].append(png)
            continue
        message = json.loads(msg)
        kind, data = message["type"], message.get("data") or {}
        prompt_id = data.get("prompt_id")
        if kind == "status" or prompt_id is None:
            continue
        assert prompt_id in jobs, f"an event of another client's job reached this client: {message}"
        if kind == "execution_start":
            assert active is None, f"{prompt_id} started while {active} was still active"
            active = prompt_id
        assert prompt_id == active, f"{kind} for {prompt_id} while {active} is the active job"
        jobs[prompt_id]["events"].append(kind)
        if kind == "executed":
            jobs[prompt_id]["outputs"] += (data.get("output") or {}).get("images", [])
        if kind in ("execution_error", "execution_interrupted"):
            raise AssertionError(f"job {prompt_id}: {message}")
        if kind == "executing" and data.get("node") is None:
            finished.append(prompt_id)
            active = None
    return finished


async def krita_run_jobs(url: str, workflows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Queue the workflows as Krita does, one after the other; per job: its events and images."""
    client_id = str(uuid.uuid4())
    get_json(f"{url}/system_stats")
    get_json(f"{url}/object_info")
    jobs: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    async with websockets.connect(f"{ws_url(url)}/ws?clientId={client_id}", max_size=2**30) as sock:
        first = json.loads(await asyncio.wait_for(sock.recv(), 30))
        assert first["type"] == "status"  # Krita reports "connected" on it
        async with aiohttp.ClientSession() as session:
            for workflow in workflows:
                job_id = str(uuid.uuid4())
                async with session.post(f"{url}/prompt",
                                        json={"prompt": workflow, "client_id": client_id, "prompt_id": job_id}) as r:
                    r.raise_for_status()
                    answer = await r.json()
                assert answer["prompt_id"] == job_id, "Prompt ID mismatch - Please update ComfyUI to 0.3.45 or later!"
                jobs[job_id] = {"events": [], "images": [], "outputs": []}
                order.append(job_id)
        finished = await asyncio.wait_for(krita_listen(sock, jobs), TIMEOUT * len(workflows))
    assert finished == order  # one after the other, in the order queued
    return jobs


def test_krita_own_prompt_ids_and_one_clients_events_in_order(target: Running) -> None:
    save = "SaveImageWebsocket" if "ws_images" in target.capabilities else "SaveImage"
    workflows = [image_workflow(f"krita_{uuid.uuid4().hex[:8]}", save=save) for _ in range(2)]
    jobs = asyncio.run(krita_run_jobs(target.url, workflows))
    for job_id, job in jobs.items():
        events = job["events"]
        assert events[0] == "execution_start" and events[-1] == "executing", (job_id, events)
        assert "executed" in events or save == "SaveImageWebsocket", events
        images = job["images"] if save == "SaveImageWebsocket" else [view(target.url, i) for i in job["outputs"]]
        assert images and all(is_png(i) for i in images), (job_id, events)
        entry = get_json(f"{target.url}/history/{job_id}")[job_id]
        assert completed(entry) and (save == "SaveImageWebsocket" or output_images(entry))
