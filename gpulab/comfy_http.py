"""Small stdlib-only client for a real ComfyUI, shared by the GPU harness scripts.

Only what the harness needs: readiness, /object_info validation, submitting an
API-format workflow with a client-chosen prompt_id, and waiting for its history
entry.  No third-party imports, so it runs under any Python the machine has.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from gpulab.paths import WORKFLOWS


class ComfyError(RuntimeError):
    """ComfyUI refused or failed a request (message carries its answer)."""


def _request(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise ComfyError(f"{url}: HTTP {e.code}: {e.read()[:2000].decode(errors='replace')}") from None


def get(base: str, path: str, timeout: float = 10.0) -> Any:
    return _request(base.rstrip("/") + path, timeout=timeout)


def post(base: str, path: str, body: Any, timeout: float = 10.0) -> Any:
    return _request(base.rstrip("/") + path, body, timeout=timeout)


def probe(base: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The /system_stats answer, or None while the server does not answer."""
    try:
        return get(base, "/system_stats", timeout=timeout)
    except (OSError, ComfyError, ValueError):
        return None


def load_workflow(name: str | Path) -> dict[str, Any]:
    path = Path(name)
    if not path.is_file():
        path = WORKFLOWS / (str(name) if str(name).endswith(".json") else f"{name}.json")
    return json.loads(path.read_text())


def patch(workflow: dict[str, Any], **by_input: Any) -> dict[str, Any]:
    """A copy with every node input named like a keyword set to its value.

    ``patch(wf, steps=2, width=64, height=64, seed=7)`` changes those inputs on
    whichever nodes have them (KSampler, EmptyLatentImage); raises KeyError for a
    name no node has, so a typo cannot silently benchmark the wrong thing.
    """
    wf = copy.deepcopy(workflow)
    for key, value in by_input.items():
        hits = [n for n in wf.values() if key in n.get("inputs", {})]
        if not hits:
            raise KeyError(f"no node in the workflow has an input {key!r}")
        for node in hits:
            node["inputs"][key] = value
    return wf


def validate(workflow: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    """Problems of an API-format workflow against a server's /object_info (empty = fine)."""
    problems = []
    for node_id, node in workflow.items():
        cls = node.get("class_type")
        info = object_info.get(cls)
        if info is None:
            problems.append(f"node {node_id}: unknown class_type {cls!r}")
            continue
        spec = info.get("input", {})
        required = spec.get("required", {})
        known = set(required) | set(spec.get("optional", {})) | set(spec.get("hidden", {}))
        inputs = node.get("inputs", {})
        for name in required:
            if name not in inputs:
                problems.append(f"node {node_id} ({cls}): missing required input {name!r}")
        for name, value in inputs.items():
            if name not in known:
                problems.append(f"node {node_id} ({cls}): unknown input {name!r}")
            elif isinstance(value, list) and (len(value) != 2 or str(value[0]) not in workflow):
                problems.append(f"node {node_id} ({cls}): input {name!r} links to a missing node {value!r}")
    return problems


def submit(base: str, workflow: dict[str, Any], client_id: str = "comfyrig-harness") -> str:
    """POST /prompt with a fresh prompt_id; returns it.  Raises ComfyError on HTTP 400."""
    prompt_id = str(uuid.uuid4())
    answer = post(base, "/prompt", {"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id})
    if answer.get("node_errors"):
        raise ComfyError(f"node_errors: {json.dumps(answer['node_errors'])[:2000]}")
    # Older ComfyUI ignores a client prompt_id and returns its own.
    return str(answer.get("prompt_id", prompt_id))


def wait(base: str, prompt_id: str, timeout: float, poll: float = 0.02) -> dict[str, Any]:
    """Poll /history/{id} until the prompt finished; returns its history entry.

    Raises TimeoutError after `timeout` seconds, ComfyError if ComfyUI reports an error.
    """
    deadline = time.monotonic() + timeout
    while True:
        entry = get(base, f"/history/{prompt_id}").get(prompt_id)
        if entry is not None:
            status = entry.get("status", {})
            if status.get("status_str") == "error" or status.get("completed") is False:
                msgs = [m for m in status.get("messages", []) if m and m[0] == "execution_error"]
                raise ComfyError(f"prompt {prompt_id} failed: {json.dumps(msgs)[:3000]}")
            return entry
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s")
        time.sleep(poll)


def run(base: str, workflow: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
    """Submit and wait; returns (history entry, wall seconds)."""
    t0 = time.perf_counter()
    entry = wait(base, submit(base, workflow), timeout)
    return entry, time.perf_counter() - t0


def images(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [img for out in entry.get("outputs", {}).values() for img in out.get("images", [])]
