"""ComfyUI's websocket (GET /ws?clientId=X) as a blocking stream of (event, data).

ComfyUI sends a job's events only to the client id the prompt was submitted
with, so the batch dispatcher connects with the id it submits with. Binary
frames (previews) are skipped. Every failure becomes ComfyAPIError.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from ..errors import ComfyAPIError

__all__ = ["ComfyEvents", "ws_url"]


def ws_url(base_url: str, client_id: str) -> str:
    base = base_url.rstrip("/")
    scheme = "wss" if base.startswith("https://") else "ws"
    return f"{scheme}://{base.split('://', 1)[1]}/ws?clientId={client_id}"


class ComfyEvents:
    """One websocket connection; ``next(timeout)`` -> (event type, data) or None on timeout."""

    def __init__(self, base_url: str, client_id: str, *, open_timeout_s: float = 5.0) -> None:
        self.url = ws_url(base_url, client_id)
        try:
            self._ws: ClientConnection = connect(self.url, open_timeout=open_timeout_s, max_size=2**24)
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise ComfyAPIError(f"ComfyUI's websocket at {self.url} did not open: {exc.__class__.__name__}.") from exc

    def next(self, timeout_s: float | None) -> tuple[str, dict[str, Any]] | None:
        """The next JSON event; None when nothing came within ``timeout_s`` seconds.

        Raises ComfyAPIError when the connection is gone (ComfyUI exited or restarted).
        """
        while True:
            try:
                message = self._ws.recv(timeout=timeout_s)
            except TimeoutError:
                return None
            except (OSError, WebSocketException) as exc:
                raise ComfyAPIError(f"ComfyUI's websocket at {self.url} closed: {exc.__class__.__name__}.") from exc
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
        try:
            self._ws.close()
        except (OSError, WebSocketException):
            pass
