from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from comfyrig.comfy.probe_http import (
    ComfyUnreachable,
    QueueCounts,
    get_prompt_counts,
    get_queue,
    get_system_stats,
    local_url,
)
from comfyrig.errors import ComfyAPIError

URL = "http://127.0.0.1:8188"


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def answer(body: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, content=json.dumps(body).encode())


@pytest.mark.parametrize("remaining, expected", [(0, QueueCounts(0, 0)), (1, QueueCounts(1, 0)), (5, QueueCounts(1, 4))])
def test_prompt_counts_from_queue_remaining(remaining: int, expected: QueueCounts) -> None:
    assert get_prompt_counts(client(answer({"exec_info": {"queue_remaining": remaining}})), URL) == expected


def test_queue_counts_lists() -> None:
    body = {"queue_running": [[1, "a", {}, {}, []]], "queue_pending": [[2, "b"], [3, "c"]]}
    assert get_queue(client(answer(body)), URL) == QueueCounts(running=1, pending=2)


def test_routes_requested() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"system": {"comfyui_version": "0.3.76"}, "devices": []})

    stats = get_system_stats(client(handler), URL + "/")
    assert stats["system"]["comfyui_version"] == "0.3.76"
    assert seen == ["/system_stats"]


def test_connection_refused_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(ComfyUnreachable, match="nothing answers .*Connection refused"):
        get_prompt_counts(client(refuse), URL)


def test_timeout_is_an_error_not_unreachable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ComfyAPIError, match="no answer within the timeout") as info:
        get_prompt_counts(client(slow), URL)
    assert not isinstance(info.value, ComfyUnreachable)


@pytest.mark.parametrize(
    "handler, message",
    [
        (answer({}, status=500), "HTTP 500"),
        (lambda r: httpx.Response(200, content=b"<html>"), "not JSON"),
        (answer({"exec_info": {}}), "no exec_info.queue_remaining"),
        (answer({"exec_info": {"queue_remaining": "x"}}), "unexpected queue_remaining"),
    ],
)
def test_bad_answers(handler: Callable[[httpx.Request], httpx.Response], message: str) -> None:
    with pytest.raises(ComfyAPIError, match=message):
        get_prompt_counts(client(handler), URL)


def test_system_stats_must_look_like_comfyui() -> None:
    with pytest.raises(ComfyAPIError, match="no 'system' object"):
        get_system_stats(client(answer({"hello": 1})), URL)


@pytest.mark.parametrize(
    "listen, url",
    [
        ("127.0.0.1", "http://127.0.0.1:8188"),
        ("0.0.0.0", "http://127.0.0.1:8188"),
        ("0.0.0.0,::", "http://127.0.0.1:8188"),
        ("::1", "http://[::1]:8188"),
        ("192.168.1.5", "http://192.168.1.5:8188"),
    ],
)
def test_local_url(listen: str, url: str) -> None:
    assert local_url(listen, 8188) == url
