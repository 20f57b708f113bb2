"""ComfyUI's own web frontend (the comfyui-frontend-package a checkout serves) in headless chromium.

Needs Playwright for Python (``pip install playwright``; its browser download is not needed) and a
chromium: ``$CHROMIUM``, else ``/usr/bin/chromium`` (Debian's ``apt-get install chromium``), else
``chromium`` on PATH. A target without the frontend (the fake) skips.

The page is driven through what the frontend itself exposes on ``window.app`` (ComfyApp):
``app.api`` (its websocket client: ``socket``, ``clientId``, events), ``app.loadApiJson`` (the
same as dropping an API-format workflow on the canvas) and ``app.queuePrompt`` (what the Run
button calls: graphToPrompt, then ``POST /api/prompt`` with the workflow in extra_pnginfo).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import completed, image_workflow, is_png, output_images, view, wait_history
from .targets import Running, get_json, module_available

pytestmark = [pytest.mark.clients, pytest.mark.e2e]

READY = """() => !!(window.app && window.app.api && window.app.api.socket
                    && window.app.api.socket.readyState === 1 && window.app.graph)"""

# Records the frontend's own view of the run: the api dispatches the websocket messages as events.
LISTEN = """() => {
  window.__seen = [];
  for (const type of ["status", "execution_start", "executing", "executed", "execution_success",
                      "execution_error", "execution_cached"]) {
    window.app.api.addEventListener(type, (e) => window.__seen.push({type, detail: e.detail}));
  }
}"""


def chromium() -> str:
    if not module_available("playwright"):
        pytest.skip("Playwright for Python is not installed (pip install playwright)")
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no chromium: set CHROMIUM or apt-get install chromium")


@contextlib.asynccontextmanager
async def opened(url: str, executable: str) -> AsyncIterator[tuple[Any, list[Any]]]:
    """The page loaded and its websocket open, with every answer to its POST /prompt collected."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            posted: list[Any] = []

            async def on_response(response: Any) -> None:
                if response.request.method == "POST" and response.url.endswith("/prompt"):
                    posted.append(await response.json())

            page.on("response", on_response)
            await page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            await page.wait_for_function(READY, timeout=120_000, polling=250)
            yield page, posted
        finally:
            await browser.close()


async def drive(url: str, executable: str, workflow: dict[str, Any], shot: Path) -> dict[str, Any]:
    async with opened(url, executable) as (page, posted):
        client_id = await page.evaluate("() => window.app.api.clientId")
        await page.evaluate(LISTEN)
        await page.evaluate("(wf) => window.app.loadApiJson(wf, 'clients-test.json')", workflow)
        await page.evaluate("() => window.app.queuePrompt(0, 1)")
        # The outcome comes after every node's events (ComfyUI sends execution_success or
        # execution_error once the last node ran): waiting for it, nothing is still on its way.
        await page.wait_for_function(
            "() => window.__seen.some(e => e.type === 'execution_success' || e.type === 'execution_error')",
            timeout=120_000, polling=250)
        seen = await page.evaluate("() => window.__seen.map(e => ({type: e.type, detail: e.detail}))")
        await page.screenshot(path=str(shot))
        return {"client_id": client_id, "posted": posted, "seen": seen}


def test_frontend_loads_connects_and_runs_a_prompt(target: Running, tmp_path: Path) -> None:
    executable = chromium()
    target.require("frontend")
    prefix = f"web_{uuid.uuid4().hex[:8]}"
    run = asyncio.run(drive(target.url, executable, image_workflow(prefix), tmp_path / "page.png"))
    assert run["client_id"], "the frontend has no websocket client id"
    assert len(run["posted"]) == 1 and run["posted"][0].get("prompt_id"), run["posted"]
    prompt_id = run["posted"][0]["prompt_id"]
    types = [e["type"] for e in run["seen"]]
    assert "execution_error" not in types, run["seen"]
    assert "execution_start" in types, types
    executed = [e["detail"] for e in run["seen"] if e["type"] == "executed"]
    assert any(d.get("prompt_id") == prompt_id and d.get("output", {}).get("images") for d in executed), executed
    entry = wait_history(target.url, prompt_id)
    assert completed(entry), entry["status"]
    assert entry["prompt"][3]["client_id"] == run["client_id"]  # extra_data: the page's own socket
    (image,) = output_images(entry)
    assert image["filename"].startswith(prefix) and is_png(view(target.url, image))
    if "jobs" in target.capabilities:  # the queue and history panels of 0.24's frontend read /api/jobs
        job = get_json(f"{target.url}/api/jobs/{prompt_id}")
        assert job["id"] == prompt_id and job["status"] == "completed", job
