"""The /api/jobs routes of ComfyUI 0.24 (server.py + comfy_execution/jobs.py), served only with
FAKE_COMFYUI_JOBS_API=1 (the fake is 0.3.76 otherwise, which has no such route): one job's
state, or a filtered, sorted page of them.

Statuses: pending, in_progress, completed, failed, cancelled (an interrupted prompt is
"cancelled": its history status is "error" with an execution_interrupted message). A finished
job carries "outputs", "execution_status" and "workflow" only in the single-job answer, as the
real one does (include_outputs=True there); list entries carry "preview_output" instead.
"""

from __future__ import annotations

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
SORT_FIELDS = ("created_at", "execution_duration")
PREVIEWABLE = frozenset({"images", "video", "audio", "3d", "text"})
THREE_D_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")


def _pruned(d: dict) -> dict:
    """comfy_api.internal.prune_dict: drop None values."""
    return {k: v for k, v in d.items() if v is not None}


def _meta(extra_data: dict) -> tuple:
    """(create_time, workflow_id) from extra_data."""
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") or {}
    return extra_data.get("create_time"), workflow.get("id") if isinstance(workflow, dict) else None


def _normalize_item(item):
    """A 3D file name string becomes a file dict; other strings and None are not files."""
    if isinstance(item, str) and item.lower().endswith(THREE_D_EXTENSIONS):
        return {"filename": item, "type": "output", "subfolder": "", "mediaType": "3d"}
    return item if isinstance(item, dict) else None


def normalize_outputs(outputs: dict) -> dict:
    out = {}
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            out[node_id] = node_outputs
            continue
        out[node_id] = {kind: items if kind == "animated" or not isinstance(items, list)
                        else [_normalize_item(i) or i for i in items if i is not None]
                        for kind, items in node_outputs.items()}
    return out


def outputs_summary(outputs: dict) -> tuple:
    """(outputs_count, preview_output): the first previewable item of type "output", else the first previewable."""
    count, preview, fallback = 0, None, None
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for kind, items in node_outputs.items():
            if kind == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    normalized = _normalize_item(item)
                    if normalized is None:
                        if kind == "text":
                            count += 1
                            text = (item[0] if item else "") if isinstance(item, tuple) else str(item)
                            entry = {"content": text[:1024], **({"truncated": True} if len(text) > 1024 else {})}
                            if preview is None and fallback is None:
                                fallback = {**entry, "nodeId": node_id, "mediaType": kind}
                        continue
                    item = normalized
                count += 1
                if preview is not None:
                    continue
                fmt = item.get("format", "")
                if kind in PREVIEWABLE or fmt.startswith(("video/", "audio/")) or \
                        item.get("filename", "").lower().endswith(THREE_D_EXTENSIONS):
                    enriched = {**item, "nodeId": node_id}
                    enriched.setdefault("mediaType", kind)
                    if item.get("type") == "output":
                        preview = enriched
                    elif fallback is None:
                        fallback = enriched
    return count, preview or fallback


def queue_item(item, status: str) -> dict:
    priority, prompt_id, _prompt, extra_data, _outputs = item[:5]
    create_time, workflow_id = _meta(extra_data)
    return _pruned({"id": prompt_id, "status": status, "priority": priority, "create_time": create_time,
                    "outputs_count": 0, "workflow_id": workflow_id})


def history_item(prompt_id: str, entry: dict, include_outputs: bool) -> dict:
    priority, _, prompt, extra_data, _ = entry["prompt"]
    create_time, workflow_id = _meta(extra_data)
    status_info = entry.get("status") or {}
    error = start = end = None
    interrupted = False
    for message in status_info.get("messages") or []:
        if isinstance(message, (list, tuple)) and len(message) >= 2 and isinstance(message[1], dict):
            name, data = message[0], message[1]
            if name == "execution_start":
                start = data.get("timestamp")
            elif name in ("execution_success", "execution_error", "execution_interrupted"):
                end = data.get("timestamp")
                if name == "execution_error":
                    error = data
                elif name == "execution_interrupted":
                    interrupted = True
    status = "completed" if status_info.get("status_str") != "error" else ("cancelled" if interrupted else "failed")
    outputs = entry.get("outputs") or {}
    count, preview = outputs_summary(outputs)
    job = _pruned({"id": prompt_id, "status": status, "priority": priority, "create_time": create_time,
                   "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                   "outputs_count": count, "preview_output": preview, "workflow_id": workflow_id})
    if include_outputs:
        job["outputs"] = normalize_outputs(outputs)
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def get_job(prompt_id: str, running: list, queued: list, history: dict):
    if prompt_id in history:
        return history_item(prompt_id, history[prompt_id], include_outputs=True)
    for item in running:
        if item[1] == prompt_id:
            return queue_item(item, "in_progress")
    for item in queued:
        if item[1] == prompt_id:
            return queue_item(item, "pending")
    return None


def _duration(job: dict):
    start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
    return end - start if end and start else 0


def all_jobs(running: list, queued: list, history: dict, statuses=None, workflow_id=None, sort_by: str = "created_at",
             sort_order: str = "desc", limit=None, offset: int = 0) -> tuple:
    """(page, total). Queued items come in the queue's heap order before the stable sort, as in 0.24."""
    wanted = set(statuses or STATUSES)
    jobs = []
    if "in_progress" in wanted:
        jobs += [queue_item(i, "in_progress") for i in running]
    if "pending" in wanted:
        jobs += [queue_item(i, "pending") for i in queued]
    if wanted & {"completed", "failed", "cancelled"}:
        jobs += [j for j in (history_item(pid, e, include_outputs=False) for pid, e in history.items())
                 if j["status"] in wanted]
    if workflow_id:
        jobs = [j for j in jobs if j.get("workflow_id") == workflow_id]
    key = _duration if sort_by == "execution_duration" else (lambda j: j.get("create_time", 0))
    jobs.sort(key=key, reverse=sort_order == "desc")
    total = len(jobs)
    if offset > 0:
        jobs = jobs[offset:]
    if limit is not None:
        jobs = jobs[:limit]
    return jobs, total
