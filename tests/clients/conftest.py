"""Fixtures for the real-client tests (marker ``clients``): ``target`` is a started server
(tests/clients/targets.py); ``image_workflow`` an image-only prompt that runs on the CPU."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .targets import ClientTarget, Running, get_json, target_params

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session", params=target_params())
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    # Session scope: pytest orders the tests of all modules by target and keeps one target up at
    # a time, so each real ComfyUI (~20-30 s to start on 2 cores) starts once per worker, not
    # once per module. Every test uses its own filename prefix and image colour, so they share it.
    chosen: ClientTarget = request.param
    with chosen.start(tmp_path_factory.mktemp(f"target-{chosen.id}")) as running:
        yield running


def image_workflow(prefix: str, *, color: int | None = None, size: int = 64, save: str = "SaveImage") -> dict[str, Any]:
    """An API-format prompt that runs on the CPU without models: EmptyImage -> ImageInvert -> save.

    The colour varies per call so ComfyUI's cache never answers a later prompt without running it.
    """
    color = uuid.uuid4().int % 0xFFFFFF if color is None else color
    saver: dict[str, Any] = {"class_type": save, "inputs": {"images": ["2", 0]}}
    if save == "SaveImage":
        saver["inputs"]["filename_prefix"] = prefix
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "9": saver,
    }


def is_png(data: bytes) -> bool:
    return data[:8] == PNG_SIGNATURE


def wait_history(url: str, prompt_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The history entry of ``prompt_id`` once it has one (polling /history/{id})."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = get_json(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry:
            return entry  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(f"no history for {prompt_id} after {timeout} s")


def output_images(entry: dict[str, Any]) -> list[dict[str, str]]:
    return [image for output in entry.get("outputs", {}).values() for image in output.get("images", [])]


def completed(entry: dict[str, Any]) -> bool:
    status = entry.get("status") or {}
    return bool(status.get("completed")) and status.get("status_str") == "success"


def view(url: str, image: dict[str, str]) -> bytes:
    """The bytes of an output image, through /view."""
    query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as response:
        return response.read()  # type: ignore[no-any-return]
