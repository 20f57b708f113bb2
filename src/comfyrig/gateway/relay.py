"""Events from the workers to the clients: one upstream websocket per worker, one per client.

The gateway connects to every worker once, under its own client id, and
submits every prompt with that id, so each worker tells the gateway about
every prompt it runs (ComfyUI sends a prompt's events only to the client id it
came with). The gateway then sends each event to the client that submitted
the prompt, through that client's ``ClientOrder``; the events of a client-less
prompt go to everyone, as ComfyUI sends them (without the final ``executing``
that ComfyUI sends only to a client id).

Each worker's ``status`` is replaced by the fleet's: ``queue_remaining`` summed
over the live workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .frames import PREVIEW_IMAGE_WITH_METADATA, frame_type, legacy_preview, preview_metadata
from .ledger import Ledger
from .order import ClientOrder, Frame

__all__ = ["Client", "Relay"]

# Events that report progress, not results: a client's later prompt may lose them while waiting.
DROPPABLE = frozenset({"progress", "progress_state", "progress_text"})
# Output kinds ComfyUI lists in ``executed`` (images, gifs, audio, video, 3d...): items with a filename.


@dataclass
class Client:
    """A client id with an open websocket (or none: its events are dropped, as ComfyUI drops them)."""

    sid: str
    socket: web.WebSocketResponse | None = None
    preview_metadata: bool = False  # announced supports_preview_metadata
    order: ClientOrder = field(default_factory=ClientOrder)


def _output_files(output: Any) -> list[tuple[str, str, str]]:
    files: list[tuple[str, str, str]] = []
    if isinstance(output, dict):
        for items in output.values():
            if isinstance(items, list):
                for item in items:
                    if isinstance(item, dict) and isinstance(item.get("filename"), str):
                        files.append((item["filename"], str(item.get("subfolder") or ""), str(item.get("type") or "output")))
    return files


class Relay:
    """Routes worker events to clients. Runs on the gateway's event loop only."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.clients: dict[str, Client] = {}
        self.sent = 0  # messages delivered to clients (metrics)

    # -- clients -----------------------------------------------------------------------------------
    def client(self, sid: str) -> Client:
        client = self.clients.get(sid)
        if client is None:
            client = self.clients[sid] = Client(sid)
        return client

    def disconnect(self, sid: str, socket: web.WebSocketResponse) -> None:
        client = self.clients.get(sid)
        if client is not None and client.socket is socket:
            client.socket = None
            if not client.order.pending():
                del self.clients[sid]

    async def send(self, client: Client, frames: list[Frame]) -> None:
        socket = client.socket
        if socket is None or socket.closed:
            return
        for frame in frames:
            try:
                if isinstance(frame, bytes):
                    await socket.send_bytes(frame)
                else:
                    await socket.send_str(frame)
                self.sent += 1
            except (ConnectionError, RuntimeError):
                return  # the client went away; its reader ends the session

    async def broadcast(self, frame: Frame) -> None:
        for client in list(self.clients.values()):
            await self.send(client, [frame])

    def status_frame(self, total: int, sid: str | None = None) -> str:
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": total}}}
        if sid is not None:
            data["sid"] = sid
        return json.dumps({"type": "status", "data": data})

    # -- prompts ------------------------------------------------------------------------------------
    def submitted(self, client_id: str | None, prompt_id: str) -> None:
        if client_id is not None:
            self.client(client_id).order.submitted(prompt_id)

    async def abandoned(self, client_id: str | None, prompt_id: str) -> None:
        """A prompt that will send no more events (deleted from the queue, refused, failed over)."""
        if client_id is not None and client_id in self.clients:
            client = self.clients[client_id]
            await self.send(client, client.order.ended(prompt_id))

    # -- from the workers ----------------------------------------------------------------------------
    async def text(self, backend: str, raw: str, message: dict[str, Any]) -> None:
        """One JSON event from ``backend`` (already known not to be ``status``)."""
        kind = message.get("type")
        data = message.get("data")
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        entry = self.ledger.get(prompt_id) if isinstance(prompt_id, str) else None
        if entry is None:
            await self.broadcast(raw)  # not the gateway's prompt (or no prompt): everyone, as ComfyUI would
            return
        if entry.backend != backend:
            return  # a worker the prompt was moved away from still reports on it
        terminal = False
        assert isinstance(data, dict) and isinstance(prompt_id, str)
        if kind == "execution_start":
            self.ledger.started(prompt_id)
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                terminal = True
            else:
                self.ledger.executing(prompt_id, str(node), data.get("display_node"))
        elif kind == "executed":
            self.ledger.output(prompt_id, backend, _output_files(data.get("output")))
        if entry.client_id is None:
            if not terminal:  # ComfyUI sends the last ``executing`` only to a prompt's client id
                await self.broadcast(raw)
        else:
            client = self.client(entry.client_id)
            frames = client.order.route(prompt_id, raw, droppable=kind in DROPPABLE)
            if terminal:
                frames += client.order.ended(prompt_id)
            await self.send(client, frames)
        if terminal:
            self.ledger.finished(prompt_id)

    async def binary(self, backend: str, frame: bytes, running: str | None) -> None:
        """A binary frame from ``backend``: a preview with metadata names its prompt; any other
        (SaveImageWebsocket's images, progress text) belongs to the prompt running there."""
        kind = frame_type(frame)
        prompt_id: str | None = running
        if kind == PREVIEW_IMAGE_WITH_METADATA:
            metadata = preview_metadata(frame)
            prompt_id = str(metadata.get("prompt_id")) if metadata and metadata.get("prompt_id") else running
        entry = self.ledger.live(prompt_id) if prompt_id else None
        droppable = kind == PREVIEW_IMAGE_WITH_METADATA
        if entry is not None and entry.backend != backend:
            return
        if entry is None or entry.client_id is None:
            for client in list(self.clients.values()):
                converted = self._for(client, frame, kind)
                if converted is not None:
                    await self.send(client, [converted])
            return
        client = self.client(entry.client_id)
        converted = self._for(client, frame, kind)
        if converted is not None:
            await self.send(client, client.order.route(entry.prompt_id, converted, droppable=droppable))

    @staticmethod
    def _for(client: Client, frame: bytes, kind: int | None) -> bytes | None:
        if kind == PREVIEW_IMAGE_WITH_METADATA and not client.preview_metadata:
            return legacy_preview(frame)
        return frame
