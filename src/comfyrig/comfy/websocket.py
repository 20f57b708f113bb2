"""ComfyUI's websocket (GET /ws?clientId=X) as a blocking stream of (event, data).

ComfyUI sends a job's events only to the client id the prompt was submitted
with, so the batch dispatcher connects with the id it submits with. Binary
frames (previews) are skipped. Failures follow the client's split: nothing
answered or the connection closed -> ComfyUnreachable; the handshake answered
with an HTTP error -> ComfyHTTPError; anything else -> ComfyAPIError.

The connection comes from a factory (``connect=``), websockets' sync client by
default; it gets the proxy decision of ``urls.env_proxy_allowed``, the same rule
as HTTP: websockets >= 15 reads HTTP_PROXY/HTTPS_PROXY/NO_PROXY itself, and must
not for a loopback ComfyUI.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from websockets.exceptions import (
    ConnectionClosed,
    InvalidProxy,
    InvalidStatus,
    ProxyError,
    WebSocketException,
)
from websockets.sync.client import connect as websockets_connect

from ..errors import ComfyAPIError, ComfyHTTPError, ComfyUnreachable
from .urls import env_proxy_allowed

__all__ = ["ComfyEvents", "WsConnect", "WsConnection", "open_websocket", "ws_url"]

MAX_MESSAGE_BYTES = 2**24  # an `executed` event lists every output of a node


class WsConnection(Protocol):
    """What ComfyEvents needs of a connection (websockets' ClientConnection has it)."""

    def recv(self, timeout: float | None = None) -> str | bytes: ...
    def close(self) -> None: ...


class WsConnect(Protocol):
    """Opens a connection. ``proxy``: True = the environment's proxy settings apply,
    None = connect directly. Raises OSError, TimeoutError or websockets' exceptions."""

    def __call__(self, url: str, *, open_timeout: float, proxy: Literal[True] | None) -> WsConnection: ...


def open_websocket(url: str, *, open_timeout: float, proxy: Literal[True] | None) -> WsConnection:
    """The production factory: websockets' sync client."""
    connection = websockets_connect(url, open_timeout=open_timeout, proxy=proxy, max_size=MAX_MESSAGE_BYTES)
    # websockets 17.1 deprecates a connection used outside 'with' (its first recv() warns);
    # entering it is what 'with' does, and ComfyEvents.close() is its exit. Works on 15 and 16 too.
    return connection.__enter__()


def ws_url(base_url: str, client_id: str) -> str:
    base = base_url.rstrip("/")
    scheme = "wss" if base.startswith("https://") else "ws"
    return f"{scheme}://{base.split('://', 1)[1]}/ws?clientId={client_id}"


class ComfyEvents:
    """One websocket connection; ``next(timeout)`` -> (event type, data) or None on timeout."""

    def __init__(
        self, base_url: str, client_id: str, *, open_timeout_s: float = 5.0, connect: WsConnect = open_websocket
    ) -> None:
        self.url = ws_url(base_url, client_id)
        proxy: Literal[True] | None = True if env_proxy_allowed(self.url) else None
        try:
            self._ws = connect(self.url, open_timeout=open_timeout_s, proxy=proxy)
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ComfyHTTPError(
                f"{self.url}: the websocket handshake was answered with HTTP {status}.", status=status
            ) from exc
        except (ImportError, InvalidProxy) as exc:  # a SOCKS proxy without python-socks, a malformed one
            host = urlsplit(self.url).hostname
            raise ComfyAPIError(
                f"{self.url}: the proxy set in the environment cannot be used ({_reason(exc)}).",
                hint=f"Add {host} to NO_PROXY to reach it directly, or fix HTTP_PROXY/HTTPS_PROXY/SOCKS_PROXY.",
            ) from exc
        except (OSError, TimeoutError, ConnectionClosed, ProxyError) as exc:
            raise ComfyUnreachable(f"{self.url}: the websocket did not open ({_reason(exc)}).") from exc
        except WebSocketException as exc:
            raise ComfyAPIError(f"{self.url}: the websocket did not open ({_reason(exc)}).") from exc

    def next(self, timeout_s: float | None) -> tuple[str, dict[str, Any]] | None:
        """The next JSON event; None when nothing came within ``timeout_s`` seconds.

        Raises ComfyUnreachable when the connection is gone (ComfyUI exited or restarted).
        """
        while True:
            try:
                message = self._ws.recv(timeout=timeout_s)
            except TimeoutError:
                return None
            except (OSError, ConnectionClosed) as exc:
                raise ComfyUnreachable(f"{self.url}: the websocket closed ({_reason(exc)}).") from exc
            except WebSocketException as exc:
                raise ComfyAPIError(f"{self.url}: the websocket failed ({_reason(exc)}).") from exc
            if isinstance(message, bytes):
                continue  # a preview image
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                data = event.get("data")
                return event["type"], data if isinstance(data, dict) else {}

    def close(self) -> None:
        with contextlib.suppress(OSError, WebSocketException):
            self._ws.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
