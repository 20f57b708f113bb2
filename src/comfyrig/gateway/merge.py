"""The fleet's queue, history and jobs as one ComfyUI would answer them (pure functions).

Each worker is asked the same question; these functions put the answers
together in ComfyUI's own order and shapes, so a client cannot tell it is
talking to several servers:

- ``GET /queue``: running and pending items of every worker, by queue number
  (the gateway numbers prompts fleet-wide, so the order is the order of arrival).
- ``GET /history``: entries in the order they finished (the timestamp of their
  last status message), with ComfyUI's ``max_items``/``offset`` applied to the
  whole; each worker is asked for as many as the page could need.
- ``GET /api/jobs``: ComfyUI 0.24's job list, sorted and paged as
  ``comfy_execution/jobs.py`` does (``created_at``: create time then id;
  ``execution_duration``), ``total`` summed; a ``next_cursor`` in ComfyUI's wire
  format for the ``created_at`` timeline (workers filter by the same keyset).

Workers see the gateway's client id on every prompt; ``restore_extra`` gives a
client back the id it submitted with (kept in ``extra_data`` under
``comfyrig_client_id``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CLIENT_KEY",
    "history_page",
    "history_window",
    "jobs_page",
    "merge_queue",
    "restore_extra",
    "restore_history_entry",
    "restore_job",
]

CLIENT_KEY = "comfyrig_client_id"  # extra_data key: the client id a prompt was submitted with
GATEWAY_SID_PREFIX = "comfyrig-gw-"


def restore_extra(extra: Any) -> Any:
    """``extra_data`` as the worker would hold it had the client talked to it directly."""
    if not isinstance(extra, dict):
        return extra
    out = dict(extra)
    if CLIENT_KEY in out:
        original = out.pop(CLIENT_KEY)
        if original is None:
            out.pop("client_id", None)
        else:
            out["client_id"] = original
    elif str(out.get("client_id", "")).startswith(GATEWAY_SID_PREFIX):
        out.pop("client_id")
    return out


def _restore_item(item: Any) -> Any:
    if isinstance(item, list) and len(item) > 3:
        return [*item[:3], restore_extra(item[3]), *item[4:]]
    return item


def restore_history_entry(entry: Any) -> Any:
    if isinstance(entry, dict) and "prompt" in entry:
        return {**entry, "prompt": _restore_item(entry["prompt"])}
    return entry


def restore_job(job: Any) -> Any:
    if isinstance(job, dict) and isinstance(job.get("workflow"), dict):
        workflow = dict(job["workflow"])
        workflow["extra_data"] = restore_extra(workflow.get("extra_data"))
        return {**job, "workflow": workflow}
    return job


def _number(item: Any) -> float:
    try:
        return float(item[0])
    except (TypeError, ValueError, IndexError, KeyError):
        return 0.0


def merge_queue(answers: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    running: list[Any] = []
    pending: list[Any] = []
    for answer in answers:
        running += [_restore_item(i) for i in answer.get("queue_running") or []]
        pending += [_restore_item(i) for i in answer.get("queue_pending") or []]
    return {"queue_running": sorted(running, key=_number), "queue_pending": sorted(pending, key=_number)}


def _ended_at(entry: Any) -> float:
    """When a history entry finished (ms), from its last status message carrying a timestamp."""
    try:
        messages = entry["status"]["messages"]
    except (TypeError, KeyError):
        return 0.0
    for message in reversed(messages or []):
        if isinstance(message, (list, tuple)) and len(message) >= 2 and isinstance(message[1], dict):
            stamp = message[1].get("timestamp")
            if isinstance(stamp, (int, float)):
                return float(stamp)
    return 0.0


def history_window(max_items: int | None, offset: int | None) -> tuple[int | None, int | None]:
    """What to ask each worker for (``max_items``, ``offset``) to answer one page of the whole:
    everything without max_items; the newest ``max_items`` for ComfyUI's default offset; the
    first ``offset + max_items`` otherwise."""
    if max_items is None:
        return None, None
    if offset is None or offset < 0:
        return max_items, None
    return offset + max_items, 0


def history_page(answers: Iterable[Mapping[str, Any]], max_items: int | None, offset: int | None) -> dict[str, Any]:
    """ComfyUI's ``get_history(max_items, offset)`` over every worker's entries, oldest first."""
    entries = [(pid, entry) for answer in answers for pid, entry in answer.items()]
    entries.sort(key=lambda pair: (_ended_at(pair[1]), _number((pair[1] or {}).get("prompt") or [0])))
    start = -1 if offset is None else offset
    if start < 0 and max_items is not None:
        start = len(entries) - max_items
    start = max(start, 0)
    chosen = entries[start:] if max_items is None else entries[start : start + max_items]
    return {pid: restore_history_entry(entry) for pid, entry in chosen}


def _job_key(sort_by: str) -> Any:
    if sort_by == "execution_duration":

        def duration(job: Mapping[str, Any]) -> tuple[float, str]:
            start, end = job.get("execution_start_time") or 0, job.get("execution_end_time") or 0
            return (end - start if start and end else 0, str(job.get("id") or ""))

        return duration
    return lambda job: (job.get("create_time") or 0, str(job.get("id") or ""))


def encode_cursor(value: str, job_id: str, order: str) -> str:
    """ComfyUI's keyset cursor (utils/cursor.py): base64url, no padding, of compact JSON
    ``{"s": "created_at", "v": value, "id": id, "o": order}``, with <, >, & escaped."""
    raw = json.dumps({"s": "created_at", "v": value, "id": job_id, "o": order}, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        raw = raw.replace(char, escape)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def jobs_page(
    answers: Sequence[Mapping[str, Any]],
    *,
    sort_by: str,
    sort_order: str,
    limit: int | None,
    offset: int,
    cursor_used: bool,
) -> dict[str, Any]:
    """One page of ``/api/jobs`` from every worker's answer to the same filters, each asked
    with ``offset=0`` and ``limit=offset+limit`` (or the same ``after`` cursor)."""
    jobs = [job for answer in answers for job in answer.get("jobs") or []]
    total = sum(int((answer.get("pagination") or {}).get("total") or 0) for answer in answers)
    jobs.sort(key=_job_key(sort_by), reverse=sort_order == "desc")
    if not cursor_used and offset > 0:
        jobs = jobs[offset:]
    more_upstream = any((answer.get("pagination") or {}).get("has_more") for answer in answers)
    has_more = limit is not None and (len(jobs) > limit or more_upstream)
    if limit is not None:
        jobs = jobs[:limit]
    pagination: dict[str, Any] = {"offset": offset, "limit": limit, "total": total, "has_more": has_more}
    if sort_by == "created_at" and has_more and jobs:
        last = jobs[-1]
        pagination["next_cursor"] = encode_cursor(str(last.get("create_time") or 0), str(last.get("id") or ""), sort_order)
    return {"jobs": [restore_job(job) for job in jobs], "pagination": pagination}
