"""The web frontend through the gateway: several prompts in a row run at once on different workers,
and the page's own queue actions (interrupt one, clear the queue, upload and use an image) reach
them. Runs only on gateway targets with the frontend (real ComfyUI workers)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import wait_history
from .targets import Running, get_json
from .test_frontend import LISTEN, chromium, opened

pytestmark = [pytest.mark.clients, pytest.mark.e2e]


def slow(color: int, prefix: str) -> dict[str, Any]:
    """A few seconds on a CPU: a large blur, never cached (a new colour each time)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def gateway_of(target: Running) -> dict[str, Any]:
    try:
        return get_json(target.url + "/comfyrig/fleet")  # type: ignore[no-any-return]
    except urllib.error.HTTPError as err:
        err.close()  # it holds the response's socket
        pytest.skip("not a gateway")
    except OSError:
        pytest.skip("not a gateway")


async def drive(url: str, executable: str, prefix: str, shot: Path) -> dict[str, Any]:
    async with opened(url, executable) as (page, posted):
        await page.evaluate(LISTEN)
        await page.evaluate("""() => window.app.api.addEventListener('execution_interrupted',
                                 (e) => window.__seen.push({type: 'execution_interrupted', detail: e.detail}))""")
        for n in range(4):  # four Run clicks in a row, each a different image
            await page.evaluate("(wf) => window.app.loadApiJson(wf, 'fleet.json')", slow(0x101010 * (n + 1), prefix))
            await page.evaluate("() => window.app.queuePrompt(0, 1)")
        for _ in range(200):
            if len(posted) == 4:
                break
            await asyncio.sleep(0.05)
        ids = [r["prompt_id"] for r in posted]
        # While the first two run (one per worker), the queue as the page reads it shows both running.
        deadline = time.monotonic() + 60
        running: list[Any] = []
        while time.monotonic() < deadline:
            queue = await page.evaluate("() => window.app.api.fetchApi('/queue').then(r => r.json())")
            running = [item[1] for item in queue["queue_running"]]
            if len(running) == 2:
                break
            await asyncio.sleep(0.2)
        # Interrupt one of those running, then clear what is still waiting, the way the page does.
        interrupted = running[-1] if running else ids[1]
        await page.evaluate("""(id) => window.app.api.fetchApi('/interrupt', {method: 'POST',
                               headers: {'Content-Type': 'application/json'}, body: JSON.stringify({prompt_id: id})})""", interrupted)
        await page.evaluate("""() => window.app.api.fetchApi('/queue', {method: 'POST',
                               headers: {'Content-Type': 'application/json'}, body: JSON.stringify({clear: true})})""")
        await page.wait_for_function(
            "(id) => window.__seen.some(e => e.type === 'executing' && e.detail === null) && "
            "window.__seen.filter(e => e.type === 'execution_success' || e.type === 'execution_interrupted').length >= 2",
            arg=ids[0], timeout=120_000, polling=250)
        # An upload through the page, used by a LoadImage prompt.
        name = await page.evaluate("""async () => {
            const canvas = document.createElement('canvas'); canvas.width = 8; canvas.height = 8;
            const blob = await new Promise(r => canvas.toBlob(r, 'image/png'));
            const body = new FormData(); body.append('image', new File([blob], 'page-upload.png'));
            body.append('overwrite', 'true');
            const answer = await window.app.api.fetchApi('/upload/image', {method: 'POST', body});
            return (await answer.json()).name; }""")
        seen = await page.evaluate("() => window.__seen.map(e => ({type: e.type, detail: e.detail}))")
        await page.screenshot(path=str(shot))
        return {"ids": ids, "running": running, "interrupted": interrupted, "seen": seen, "upload": name}


def test_the_page_runs_prompts_on_every_worker_at_once(target: Running, tmp_path: Path) -> None:
    executable = chromium()
    target.require("frontend")
    fleet = gateway_of(target)
    prefix = f"fleet_{uuid.uuid4().hex[:6]}"
    run = asyncio.run(drive(target.url, executable, prefix, tmp_path / "page.png"))
    ids = run["ids"]
    assert len(ids) == 4
    assert len(set(run["running"])) == 2 and set(run["running"]) <= set(ids), run["running"]  # two at once
    stopped = wait_history(target.url, run["interrupted"])
    assert any(m[0] == "execution_interrupted" for m in stopped["status"]["messages"])
    types = [e["type"] for e in run["seen"]]
    assert "execution_interrupted" in types and "execution_success" in types
    # The two that ran at once ran on different workers.
    ran = [[pid for pid in run["running"] if pid in get_json(b["url"] + "/history")] for b in fleet["backends"]]
    assert sorted(map(len, ran)) == [1, 1], ran
    # The page's upload is on every worker, and a prompt using it runs wherever it lands.
    load = {"1": {"class_type": "LoadImage", "inputs": {"image": run["upload"]}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}
    posted = []
    for _ in range(2):
        request = urllib.request.Request(target.url + "/prompt", data=json.dumps({"prompt": load}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            posted.append(json.loads(response.read())["prompt_id"])
        load["2"]["inputs"] = {"image": ["1", 0]}
    for pid in posted:
        assert wait_history(target.url, pid)["status"]["status_str"] == "success"
