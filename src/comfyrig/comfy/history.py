"""Reading what ComfyUI says about a prompt: its history entry and a 400 from POST /prompt.

Shapes, from ComfyUI's server.py and execution.py: ``GET /history/{id}`` ->
``{id: {prompt, outputs: {node_id: {images: [{filename, subfolder, type}], ...}},
status: {status_str, completed, messages: [[event, data], ...]}}}``; a rejected
``POST /prompt`` -> HTTP 400 ``{error: {type, message, details, extra_info},
node_errors: {node_id: {errors: [{type, message, details, extra_info}], class_type, ...}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["Outcome", "classify_history", "output_refs", "summarize_400"]

Outcome = Literal["success", "error", "interrupted", "unknown"]


def output_refs(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(node id, {filename, subfolder, type}) for every saved output in a history entry.

    Only ``type: output`` files count (SaveImage and the like); previews in temp do not."""
    refs: list[tuple[str, Mapping[str, Any]]] = []
    outputs = entry.get("outputs") or {}
    for node_id in sorted(outputs, key=lambda k: (len(str(k)), str(k))):
        for items in (outputs[node_id] or {}).values():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and item.get("filename") and item.get("type", "output") == "output":
                    refs.append((str(node_id), item))
    return refs


def classify_history(entry: Mapping[str, Any]) -> tuple[Outcome, dict[str, Any]]:
    """-> (outcome, details) from a history entry's status; "unknown" when it ended without a verdict."""
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    for message in messages:
        if not isinstance(message, list) or len(message) < 2:
            continue
        event, data = message[0], message[1] if isinstance(message[1], dict) else {}
        if event == "execution_error":
            return "error", {
                "node": str(data.get("node_id")),
                "class_type": data.get("node_type"),
                "exception_type": data.get("exception_type"),
                "message": str(data.get("exception_message", "")).strip(),
            }
        if event == "execution_interrupted":
            return "interrupted", {"node": str(data.get("node_id")), "class_type": data.get("node_type")}
    if status.get("status_str") == "success" or status.get("completed") is True:
        return "success", {}
    return "unknown", {"message": f"ComfyUI reported status {status.get('status_str')!r} without an error message"}


def summarize_400(body: Any) -> dict[str, Any]:
    """The reason of a rejected prompt (HTTP 400): the first node error, or the top-level error."""
    if not isinstance(body, dict):
        return {"message": "ComfyUI rejected the prompt (HTTP 400)"}
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    reason: dict[str, Any] = {"error_type": error.get("type"), "message": error.get("message") or "invalid prompt"}
    node_errors = body.get("node_errors") or {}
    if isinstance(node_errors, dict) and node_errors:
        node_id = min(node_errors, key=lambda k: (len(k), k))
        info: dict[str, Any] = node_errors[node_id] or {}
        first: dict[str, Any] = (info.get("errors") or [{}])[0]
        reason.update(
            node=node_id,
            class_type=info.get("class_type"),
            exception_type=first.get("type"),
            message=f"{first.get('message', '')}: {first.get('details', '')}".strip(": "),
        )
    elif error.get("details"):
        reason["message"] = f"{reason['message']}: {error['details']}"
    return reason
