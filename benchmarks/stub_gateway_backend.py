"""A stand-in ComfyUI for the gateway benchmark: instant answers, timestamped events.

Run as its own process (its CPU time is not the gateway's):
    python benchmarks/stub_gateway_backend.py --count 2 --events 20
It prints "PORTS p1,p2" once listening, then serves until killed.

It answers ComfyUI's routes with ComfyUI's shapes but does no work: ``POST /prompt`` is
accepted at once and, for a prompt with a client id, ``--events`` events follow on that
client's websocket (``execution_start``, ``progress`` ..., ``execution_success``, ``executing``
with node null), each carrying ``bench_sent_ns`` (time.time_ns() when sent), so a client can
measure how long the relay took. Finished prompts go to ``/history`` (at most 10,000, as
ComfyUI keeps). Only what the gateway and the benchmark touch is served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web


class Stub:
    def __init__(self, events: int) -> None:
        self.events = events
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.history: OrderedDict[str, Any] = OrderedDict()
        self.number = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/prompt", lambda r: web.json_response({"exec_info": {"queue_remaining": 0}}))
        app.router.add_get("/queue", lambda r: web.json_response({"queue_running": [], "queue_pending": []}))
        app.router.add_get("/features", lambda r: web.json_response({"supports_preview_metadata": True}))
        app.router.add_get("/object_info", lambda r: web.json_response({"EmptyImage": {}}))
        app.router.add_get("/history", self.get_history)
        return app

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId", "anonymous")
        self.sockets[sid] = socket
        await socket.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}}))
        async for _ in socket:
            pass
        self.sockets.pop(sid, None)
        return socket

    async def prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt_id = str(body.get("prompt_id") or self.number)
        number = body.get("number", self.number)
        self.number += 1
        client = body.get("client_id")
        if client is not None:
            asyncio.get_running_loop().create_task(self.run(prompt_id, client, number, body.get("extra_data") or {}))
        else:
            self.finish(prompt_id, number, body.get("extra_data") or {})
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    async def run(self, prompt_id: str, client: str, number: Any, extra: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # after the answer, as ComfyUI's worker thread
        socket = self.sockets.get(client)
        kinds = ["execution_start", *["progress"] * max(self.events - 3, 0), "execution_success"]
        for n, kind in enumerate(kinds):
            data = {"prompt_id": prompt_id, "value": n, "max": len(kinds), "node": "4", "bench_sent_ns": time.time_ns()}
            if socket is not None:
                await socket.send_str(json.dumps({"type": kind, "data": data}))
        self.finish(prompt_id, number, extra)
        if socket is not None:
            await socket.send_str(json.dumps({"type": "executing", "data": {"node": None, "prompt_id": prompt_id,
                                                                             "bench_sent_ns": time.time_ns()}}))

    def finish(self, prompt_id: str, number: Any, extra: dict[str, Any]) -> None:
        now = int(time.time() * 1000)
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}, extra, ["1"]],
            "outputs": {"3": {"images": [{"filename": f"{prompt_id}.png", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": True,
                       "messages": [["execution_start", {"prompt_id": prompt_id, "timestamp": now}],
                                    ["execution_success", {"prompt_id": prompt_id, "timestamp": now}]]},
            "meta": {},
        }
        while len(self.history) > 10_000:
            self.history.popitem(last=False)

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        max_items = request.query.get("max_items")
        if max_items is not None:
            offset = int(request.query.get("offset", -1))
            if offset < 0:
                offset = len(items) - int(max_items)
            items = items[max(offset, 0): max(offset, 0) + int(max_items)]
        return web.json_response(dict(items))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    ports = []
    for _ in range(args.count):
        runner = web.AppRunner(Stub(args.events).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    print("PORTS " + ",".join(map(str, ports)), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
