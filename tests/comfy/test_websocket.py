"""ComfyEvents through an injected connection factory: events, and the client's error split."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidProxy,
    InvalidStatus,
    ProxyError,
)
from websockets.http11 import Response

from comfyrig.comfy.websocket import ComfyEvents
from comfyrig.errors import ComfyAPIError, ComfyHTTPError, ComfyUnreachable

URL = "http://127.0.0.1:8188"


class Scripted:
    """A connection that returns (or raises) the scripted frames in order, then times out."""

    def __init__(self, frames: list[str | bytes | BaseException]) -> None:
        self.frames = list(frames)
        self.closed = False

    def recv(self, timeout: float | None = None) -> str | bytes:
        if not self.frames:
            raise TimeoutError
        frame = self.frames.pop(0)
        if isinstance(frame, BaseException):
            raise frame
        return frame

    def close(self) -> None:
        self.closed = True


def factory(connection: Scripted | BaseException) -> Callable[..., Scripted]:
    def connect(url: str, *, open_timeout: float, proxy: Literal[True] | None) -> Scripted:
        if isinstance(connection, BaseException):
            raise connection
        return connection

    return connect


def event(kind: str, data: object) -> str:
    return json.dumps({"type": kind, "data": data})


def test_events_in_order_skipping_previews_and_noise() -> None:
    connection = Scripted([
        event("status", {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "c"}),
        b"\x00\x00\x00\x01preview",
        "not json",
        json.dumps({"no": "type"}),
        event("executing", {"node": None, "prompt_id": "p"}),
        event("odd", ["not", "a", "dict"]),
    ])
    events = ComfyEvents(URL, "c", connect=factory(connection))
    assert events.next(0.1) == ("status", {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "c"})
    assert events.next(0.1) == ("executing", {"node": None, "prompt_id": "p"})
    assert events.next(0.1) == ("odd", {})
    assert events.next(0.1) is None
    events.close()
    assert connection.closed


@pytest.mark.parametrize(
    "failure, kind, message",
    [
        (ConnectionRefusedError(111, "Connection refused"), ComfyUnreachable, "did not open .*Connection refused"),
        (TimeoutError("timed out during opening handshake"), ComfyUnreachable, "did not open .*TimeoutError"),
        (ProxyError("proxy rejected connection"), ComfyUnreachable, "did not open .*ProxyError"),
        (InvalidStatus(Response(404, "Not Found", Headers())), ComfyHTTPError, "handshake was answered with HTTP 404"),
        (ImportError("connecting through a SOCKS proxy requires python-socks"), ComfyAPIError, "proxy .* cannot be used"),
        (InvalidProxy("ftp://p", "scheme ftp isn't supported"), ComfyAPIError, "proxy .* cannot be used"),
    ],
)
def test_open_failures(failure: BaseException, kind: type[ComfyAPIError], message: str) -> None:
    with pytest.raises(kind, match=message) as info:
        ComfyEvents(URL, "c", connect=factory(failure))
    assert info.value.message.startswith("ws://127.0.0.1:8188/ws?clientId=c: ")
    assert type(info.value) is kind and info.value.status == (404 if kind is ComfyHTTPError else None)


def test_a_closed_connection_is_unreachable() -> None:
    events = ComfyEvents(URL, "c", connect=factory(Scripted([ConnectionClosedError(None, None)])))
    with pytest.raises(ComfyUnreachable, match="the websocket closed"):
        events.next(0.1)
