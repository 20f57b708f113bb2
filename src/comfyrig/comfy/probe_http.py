"""Minimal, short-timeout probes of a running ComfyUI's HTTP API.

Only what ``doctor`` and ``monitor`` need: ``GET /queue``, ``GET /prompt`` and
``GET /system_stats``. The full client (submission, websocket, history) lives
elsewhere; these functions take an ``httpx.Client`` so tests pass one built on
``httpx.MockTransport``. Every transport or decoding failure becomes a
ComfyAPIError here, in one place; ``ComfyUnreachable`` (a subclass) means
nothing answered at all, which callers show as "down" rather than "error".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import ComfyAPIError
from .urls import local_url

__all__ = [
    "ComfyUnreachable",
    "DEFAULT_TIMEOUT",
    "QueueCounts",
    "local_url",
    "get_prompt_counts",
    "get_queue",
    "get_system_stats",
    "make_client",
]

# Short on purpose: a probe that waits longer than a monitor tick is useless,
# and a local ComfyUI answers these routes in about a millisecond.
DEFAULT_TIMEOUT = httpx.Timeout(1.0, connect=0.5)


class ComfyUnreachable(ComfyAPIError):
    """Nothing answered at the URL (connection refused, no route, DNS failure)."""


@dataclass(frozen=True)
class QueueCounts:
    """Prompts executing now and waiting; ComfyUI runs one prompt at a time."""

    running: int
    pending: int


def make_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.Client:
    """A client for probing loopback instances; proxies from the environment are ignored."""
    return httpx.Client(timeout=timeout, trust_env=False)


def _get_json(client: httpx.Client, base_url: str, route: str) -> Any:
    url = base_url.rstrip("/") + route
    try:
        response = client.get(url)
    except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
        raise ComfyUnreachable(f"{url}: nothing answers ({_reason(exc)}).") from exc
    except httpx.TimeoutException as exc:
        raise ComfyAPIError(f"{url}: no answer within the timeout ({type(exc).__name__}).") from exc
    except httpx.HTTPError as exc:
        raise ComfyAPIError(f"{url}: {_reason(exc)}.") from exc
    if response.status_code != 200:
        raise ComfyAPIError(f"{url}: HTTP {response.status_code}.")
    try:
        return response.json()
    except ValueError as exc:
        raise ComfyAPIError(f"{url}: the answer is not JSON, so this is probably not ComfyUI.") from exc


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _count(value: Any, url: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ComfyAPIError(f"{url}: unexpected {what} {value!r}, so this is probably not ComfyUI.")
    return value


def get_queue(client: httpx.Client, base_url: str) -> QueueCounts:
    """``GET /queue`` -> running and pending counts. Raises ComfyAPIError.

    The answer carries every queued workflow, so it can be large; the monitor
    uses ``get_prompt_counts`` for its per-tick poll instead.
    """
    data = _get_json(client, base_url, "/queue")
    try:
        return QueueCounts(running=len(data["queue_running"]), pending=len(data["queue_pending"]))
    except (KeyError, TypeError) as exc:
        raise ComfyAPIError(f"{base_url}/queue: no queue_running/queue_pending lists in the answer.") from exc


def get_prompt_counts(client: httpx.Client, base_url: str) -> QueueCounts:
    """``GET /prompt`` -> counts derived from ``exec_info.queue_remaining``. Raises ComfyAPIError.

    The cheapest probe (a few bytes whatever the queue holds). ComfyUI runs
    prompts on a single worker thread, so at most one is running and the rest
    of ``queue_remaining`` (queued + running) is pending.
    """
    data = _get_json(client, base_url, "/prompt")
    try:
        remaining = data["exec_info"]["queue_remaining"]
    except (KeyError, TypeError) as exc:
        raise ComfyAPIError(f"{base_url}/prompt: no exec_info.queue_remaining in the answer.") from exc
    remaining = _count(remaining, f"{base_url}/prompt", "queue_remaining")
    running = min(remaining, 1)
    return QueueCounts(running=running, pending=remaining - running)


def get_system_stats(client: httpx.Client, base_url: str) -> dict[str, Any]:
    """``GET /system_stats`` -> the decoded object (system, devices). Raises ComfyAPIError."""
    data = _get_json(client, base_url, "/system_stats")
    if not isinstance(data, dict) or not isinstance(data.get("system"), dict):
        raise ComfyAPIError(f"{base_url}/system_stats: no 'system' object in the answer, so this is probably not ComfyUI.")
    return data
