"""The /api/jobs routes of ComfyUI 0.24 (server.py + comfy_execution/jobs.py), when the fake
imitates it (FAKE_COMFYUI_JOBS_API=1): one job's state, or a filtered page of them.

Statuses: pending, in_progress, completed, failed, cancelled (an interrupted prompt is
"cancelled": its history status is "error" with an execution_interrupted message). A finished
job carries "outputs" and "execution_status" (the history entry's status) only in the single
job answer, as the real one does (include_outputs=True there).
"""

from __future__ import annotations

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


def _meta(extra_data) -> dict:
    out = {}
    if isinstance(extra_data, dict):
        if "create_time" in extra_data:
            out["create_time"] = extra_data["create_time"]
        workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") if isinstance(extra_data.get("extra_pnginfo"), dict) else None
        if isinstance(workflow, dict) and workflow.get("id"):
            out["workflow_id"] = workflow["id"]
    return out


def queue_item(item, status: str) -> dict:
    priority, prompt_id, _prompt, extra_data, _outputs = item[:5]
    return {"id": prompt_id, "status": status, "priority": priority, "outputs_count": 0, **_meta(extra_data)}


def history_item(prompt_id: str, entry: dict, include_outputs: bool) -> dict:
    priority, _, prompt, extra_data, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    messages = status_info.get("messages") or []
    error = None
    interrupted = False
    start = end = None
    for message in messages:
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
    status_str = status_info.get("status_str")
    status = "completed" if status_str != "error" else ("cancelled" if interrupted else "failed")
    outputs = entry.get("outputs") or {}
    count = sum(len(items) for node in outputs.values() if isinstance(node, dict)
                for kind, items in node.items() if kind != "animated" and isinstance(items, list))
    job = {"id": prompt_id, "status": status, "priority": priority, "outputs_count": count, **_meta(extra_data)}
    for key, value in (("execution_start_time", start), ("execution_end_time", end), ("execution_error", error)):
        if value is not None:
            job[key] = value
    if include_outputs:
        job["outputs"] = outputs
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


def all_jobs(running: list, queued: list, history: dict, statuses, limit, offset: int) -> tuple:
    jobs = [queue_item(i, "in_progress") for i in running] + [queue_item(i, "pending") for i in sorted(queued)]
    jobs += [history_item(pid, entry, include_outputs=False) for pid, entry in history.items()]
    if statuses:
        jobs = [j for j in jobs if j["status"] in statuses]
    jobs.sort(key=lambda j: j.get("create_time", 0), reverse=True)
    total = len(jobs)
    page = jobs[offset:offset + limit] if limit is not None else jobs[offset:]
    return page, total
