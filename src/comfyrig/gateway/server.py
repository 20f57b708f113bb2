"""One ComfyUI-compatible server in front of several: the gateway's HTTP side and its loops.

Routes are ComfyUI's (``server.py``), each also under ``/api``:

- ``POST /prompt`` is routed to one worker (``ledger.choose_backend``) with the
  gateway's client id and a fleet-wide queue number; the worker's answer,
  400 ``node_errors`` included, is returned as it is.
- ``GET /queue``, ``/history``, ``/api/jobs``, ``GET /prompt`` are merged
  (``merge``); ``/history/{id}`` and ``/api/jobs/{id}`` go to the prompt's worker.
- ``/interrupt`` with a prompt id goes to its worker, without to all; ``POST
  /queue``, ``POST /history`` and ``/free`` go to all (deletes to the owners).
- ``/upload/image`` and ``/upload/mask`` are written once per storage group
  under one name; ``/view`` goes to the worker that wrote the file.
- ``/ws`` is the relay (``relay``); ``/system_stats`` lists every worker's devices.
- Anything else (the web page, ``/object_info``, user data and settings,
  extensions, templates) comes from the home worker, so settings and saved
  workflows live in one place.
- ``/comfyrig/fleet`` (JSON) and ``/comfyrig/metrics`` (Prometheus text) say
  what the gateway sees.

A worker whose websocket drops is taken off the routing table; after a short
grace its prompts are re-submitted (same prompt id, same body) to another
worker, and a client sees them run there. With no worker left for
``requeue_timeout_s`` a prompt fails with ComfyUI's ``execution_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from ..comfy.catalog import Catalog, CatalogDiff, catalog_of
from ..events import Reporter, discard
from .auth import COOKIE, auth_middleware, origin_middleware
from .backends import Backend, BackendSpec, Sessions
from .events import BackendDown, BackendUp, GatewayEvent, NodesDiffer, PromptFailed, PromptMoved
from .ledger import Ledger, PromptEntry, PromptState, choose_backend
from .merge import CLIENT_KEY, history_page, history_window, jobs_page, merge_queue, restore_history_entry, restore_job
from .relay import Relay

__all__ = ["GatewayOptions", "GatewayServer"]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length",
})
# Request headers the workers must not see: the browser's origin (the gateway checked it; a
# worker would compare it with its own address and refuse) and the gateway's credentials.
NOT_FORWARDED = frozenset({"origin", "referer", "sec-fetch-site", "authorization"})
API_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
MAX_UPLOAD = 100 * 2**20  # bytes: ComfyUI's default --max-upload-size (100 MB)


@dataclass(frozen=True)
class GatewayOptions:
    host: str = "127.0.0.1"  # one address or a comma-separated list, as ComfyUI's --listen
    port: int = 8188
    token: str | None = None  # None: no authentication (loopback, or --insecure-no-auth)
    lost_grace_s: float = 2.0  # a dropped worker socket may come back this soon, with its queue
    requeue_timeout_s: float = 120.0  # how long a prompt waits for any worker before it fails
    max_upload_bytes: int = MAX_UPLOAD


def _error(status: int, kind: str, message: str) -> web.Response:
    """An error in ComfyUI's shape (``{error: {type, message, details, extra_info}, node_errors}``)."""
    body = {"error": {"type": kind, "message": message, "details": "", "extra_info": {}}, "node_errors": {}}
    return web.json_response(body, status=status)


async def _decoded(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    """A worker's answer: its status and its JSON (None for an empty body; the text for a body
    that is not JSON, so an error a worker wrote as text reaches the client as it was)."""
    raw = await response.read()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, raw.decode(errors="replace")


class GatewayServer:
    """The gateway on one asyncio loop: ``await start()``, ``await stop()``."""

    def __init__(
        self,
        backends: Sequence[BackendSpec],
        options: GatewayOptions,
        *,
        reporter: Reporter[GatewayEvent] = discard,
        clock: Callable[[], float] = time.monotonic,
        gpu_stats: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        # No backend yet is fine: workers on a Ray cluster join (add_backend) once their ComfyUI is
        # ready; until then a request that needs one is answered 503.
        self.options = options
        self.backends = {spec.name: Backend(spec) for spec in backends}
        self.order = [spec.name for spec in backends]
        self.ledger = Ledger()
        self.relay = Relay(self.ledger)
        # Each upstream connection gets its own client id under this prefix. ComfyUI (0.3.x to
        # 0.24) forgets a client id when an *earlier* socket with that id closes, even after a
        # newer one registered, so a reconnect under the same id could go deaf without a sign.
        self.sid_prefix = f"comfyrig-gw-{options.host}-{options.port}".replace(":", "_").replace(",", "_")
        self.report = reporter
        self.clock = clock
        # NVML (or the simulated GPUs), read on each /comfyrig/fleet or /metrics request, off the loop:
        # [{index, name, utilization_pct, memory_used_mib, memory_total_mib}]
        self.gpu_stats = gpu_stats
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._sessions: Sessions | None = None
        self._retired: dict[str, float] = {}  # backends removed for good -> when their grace ended
        self._upstreams: dict[str, asyncio.Task[None]] = {}
        self._catalogs: dict[str, Catalog] = {}  # node types and model files per backend, from /object_info
        self._reported: set[tuple[str, str]] = set()
        self._submit_lock = asyncio.Lock()
        self.counters = {"prompts": 0, "prompts_moved": 0, "prompts_failed": 0, "upstream_reconnects": 0}

    # -- life ---------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        middlewares: list[Middleware] = [origin_middleware()]
        if self.options.token:
            middlewares.insert(0, auth_middleware(self.options.token))
        app = web.Application(client_max_size=self.options.max_upload_bytes, middlewares=middlewares)
        own = [
            ("POST", "/prompt", self.post_prompt), ("GET", "/prompt", self.get_prompt),
            ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
            ("GET", "/history", self.get_history), ("GET", "/history/{prompt_id}", self.get_history_one),
            ("POST", "/history", self.post_history), ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free), ("GET", "/ws", self.websocket),
            ("POST", "/upload/image", self.upload), ("POST", "/upload/mask", self.upload),
            ("GET", "/view", self.view), ("GET", "/system_stats", self.system_stats),
        ]
        for method, path, handler in own:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_get("/api/jobs", self.get_jobs)
        app.router.add_get("/api/jobs/{job_id}", self.get_job)
        app.router.add_get("/comfyrig/fleet", self.fleet)
        app.router.add_get("/comfyrig/metrics", self.metrics)
        app.router.add_route("*", "/{tail:.*}", self.to_home)
        return app

    async def start(self) -> None:
        """Bind (OSError when the address is taken) and connect to every backend."""
        self._sessions = Sessions()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            for host in self.options.host.split(","):  # ComfyUI's --listen takes a list too
                await web.TCPSite(self._runner, host.strip().strip("[]"), self.options.port, reuse_address=True).start()
        except OSError:
            await self.stop()
            raise
        for name in self.order:
            self._upstreams[name] = asyncio.create_task(self._upstream(self.backends[name]))
        self._tasks.append(asyncio.create_task(self._rescue_loop()))

    async def add_backend(self, spec: BackendSpec) -> None:
        """A worker that joined (a Ray node that came up, a worker started later): routable once
        its websocket opens. A name already known is replaced (its URL may have changed)."""
        if spec.name in self.backends:
            await self.remove_backend(spec.name, keep_prompts=True)
        self.backends[spec.name] = Backend(spec)
        if spec.name not in self.order:
            self.order.append(spec.name)
        self._upstreams[spec.name] = asyncio.create_task(self._upstream(self.backends[spec.name]))

    async def remove_backend(self, name: str, *, keep_prompts: bool = False) -> None:
        """A worker that left for good (its node is gone): off the routing table now, and its
        prompts re-submitted elsewhere at once, with no grace for a reconnect."""
        backend = self.backends.get(name)
        if backend is None:
            return
        task = self._upstreams.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if backend.live:
            self._backend_down(backend)
        # Its catalog goes with it: a worker replaced under this name (a new URL, maybe another
        # node) is compared afresh, and one that left is no longer compared.
        self._catalogs.pop(name, None)
        self._reported = {pair for pair in self._reported if name not in pair}
        if keep_prompts:
            return
        del self.backends[name]
        self.order.remove(name)
        self._retired[name] = self.clock() - self.options.lost_grace_s  # no grace: it is not coming back
        for entry in self.ledger.in_flight(name):
            await self._resubmit(entry, name)  # where none is live, the rescue loop keeps trying

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._upstreams.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks, self._upstreams = [], {}
        for client in list(self.relay.clients.values()):
            if client.socket is not None:
                with contextlib.suppress(Exception):
                    await client.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sessions is not None:
            await self._sessions.close()
            self._sessions = None

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def sessions(self) -> Sessions:
        assert self._sessions is not None, "the gateway is not started"
        return self._sessions

    def live(self) -> list[str]:
        return [name for name in self.order if self.backends[name].live]

    def _is_live(self, name: str) -> bool:
        backend = self.backends.get(name)
        return backend is not None and backend.live

    def home(self) -> Backend | None:
        """The worker that serves the page, user data, settings and node schemas: the first live
        one (the fleet's order puts this machine's workers first)."""
        live = self.live()
        return self.backends[live[0]] if live else None

    async def _json(self, backend: Backend, method: str, path: str, *, body: Any = None,
                    params: dict[str, str] | None = None) -> tuple[int, Any]:
        session = self.sessions.for_url(backend.url)
        async with session.request(method, backend.url + path, json=body, params=params, timeout=API_TIMEOUT) as response:
            return await _decoded(response)

    async def _object(self, backend: Backend, path: str) -> dict[str, Any] | None:
        """The JSON object a worker answers ``GET path`` with; None when it does not answer, or
        answers anything but 200 with an object."""
        try:
            status, data = await self._json(backend, "GET", path)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None
        return data if status == 200 and isinstance(data, dict) else None

    async def _each(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                    names: Sequence[str] | None = None) -> list[tuple[str, int, Any]]:
        """The same request to several live backends at once: (name, status, JSON) of those that
        answered; a backend that did not is left out (it is being lost; the upstream notices)."""
        targets = [self.backends[n] for n in (names if names is not None else self.live()) if n in self.backends]

        async def one(backend: Backend) -> tuple[str, int, Any] | None:
            try:
                status, data = await self._json(backend, method, path, body=body, params=params)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                return None
            return backend.name, status, data

        results = await asyncio.gather(*(one(b) for b in targets))
        return [r for r in results if r is not None]

    def total_remaining(self) -> int:
        return sum(self.ledger.queue_remaining(name) for name in self.live())

    # -- prompts ------------------------------------------------------------------------------------
    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_prompt", "The request body is not JSON.")
        if not isinstance(body, dict):
            return _error(400, "invalid_prompt", "The request body must be a JSON object.")
        if "prompt" not in body:
            return _error(400, "no_prompt", "No prompt provided")
        client_id = body.get("client_id")
        client_id = str(client_id) if client_id is not None else None
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        known = self.ledger.get(prompt_id)
        if known is not None:
            if known.client_id == client_id and known.answer is not None:
                return web.json_response(known.answer)  # the same client sent it again: once is enough
            return _error(400, "invalid_prompt", f"Prompt id {prompt_id} is already in use by another prompt.")
        async with self._submit_lock:  # choose-and-record is one step, or two prompts pick one idle worker
            number = float(body["number"]) if isinstance(body.get("number"), (int, float)) else \
                self.ledger.next_number(bool(body.get("front")))
            extra = dict(body.get("extra_data") or {}) if isinstance(body.get("extra_data"), dict) else {}
            extra[CLIENT_KEY] = client_id
            forwarded = {**body, "prompt_id": prompt_id, "number": number, "extra_data": extra}
            forwarded.pop("front", None)
            target = choose_backend(self.live(), self.ledger, client_id)
            if target is None:
                return _error(503, "no_worker", "No ComfyUI worker behind this gateway is ready; try again shortly.")
            entry = PromptEntry(prompt_id, client_id, target, number, forwarded)
            self.ledger.add(entry)
            self.relay.submitted(client_id, prompt_id)
        return await self._forward_prompt(entry, first=True)

    async def _forward_prompt(self, entry: PromptEntry, *, first: bool) -> web.StreamResponse:
        """To ``entry.backend``; a worker that is gone or does not answer is passed over for the
        next least-loaded one (the prompt had not been accepted there)."""
        tried: set[str] = set()
        while True:
            backend = self.backends.get(entry.backend)  # None: removed while the prompt was on its way
            if backend is not None:
                tried.add(backend.name)
                entry.sid = backend.sid  # its events come back on the connection open now
                entry.body["client_id"] = backend.sid
                try:
                    status, data = await self._json(backend, "POST", "/prompt", body=entry.body)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    backend = None
            if backend is None:
                target = choose_backend([n for n in self.live() if n not in tried], self.ledger, entry.client_id)
                if target is None:
                    self.ledger.forget(entry.prompt_id)
                    await self.relay.abandoned(entry.client_id, entry.prompt_id)
                    return _error(503, "no_worker", "No ComfyUI worker behind this gateway answered; try again shortly.")
                self.ledger.move(entry.prompt_id, target)
                continue
            if status == 200 and isinstance(data, dict):
                answer = {**data, "prompt_id": entry.prompt_id, "number": entry.number}
                self.ledger.accepted(entry.prompt_id, answer)
                if first:
                    self.counters["prompts"] += 1
                return web.json_response(answer)
            # ComfyUI refused it (400 node_errors, or a worker's own error): the client gets that answer.
            self.ledger.forget(entry.prompt_id)
            await self.relay.abandoned(entry.client_id, entry.prompt_id)
            if isinstance(data, (dict, list)):
                return web.json_response(data, status=status)
            return web.Response(status=status, text=str(data or ""))

    async def get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"exec_info": {"queue_remaining": self.total_remaining()}})

    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        answers = [data for _, status, data in await self._each("GET", "/queue") if status == 200 and isinstance(data, dict)]
        return web.json_response(merge_queue(answers))

    async def post_queue(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body.get("clear"):
            await self._each("POST", "/queue", body={"clear": True})
            for entry in self.ledger.in_flight():
                if entry.state in ("forwarding", "queued"):
                    await self._drop(entry.prompt_id)
        deletes = body.get("delete")
        if isinstance(deletes, list):
            by_backend: dict[str, list[str]] = {}
            unknown: list[str] = []
            for pid in map(str, deletes):
                owner = self.ledger.live(pid)
                (by_backend.setdefault(owner.backend, []) if owner else unknown).append(pid)
            for name, ids in by_backend.items():
                await self._each("POST", "/queue", body={"delete": ids}, names=[name])
            if unknown:
                await self._each("POST", "/queue", body={"delete": unknown})
            for ids in by_backend.values():
                for pid in ids:
                    queued = self.ledger.live(pid)
                    if queued is not None and queued.state != "running":
                        await self._drop(pid)
        return web.Response(status=200)

    async def _drop(self, prompt_id: str) -> None:
        """A prompt removed from a queue before it ran: it sends no events any more."""
        entry = self.ledger.finished(prompt_id)
        if entry is not None:
            await self.relay.abandoned(entry.client_id, prompt_id)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def get_history(self, request: web.Request) -> web.StreamResponse:
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query["offset"]) if "offset" in request.query else None
        except ValueError:
            return web.Response(status=400, text="max_items and offset must be integers")
        ask_max, ask_offset = history_window(max_items, offset)
        params = {k: str(v) for k, v in (("max_items", ask_max), ("offset", ask_offset)) if v is not None}
        answers = [d for _, s, d in await self._each("GET", "/history", params=params) if s == 200 and isinstance(d, dict)]
        return web.json_response(history_page(answers, max_items, offset))

    async def get_history_one(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        entry = self.ledger.get(prompt_id)
        names = [entry.backend] if entry is not None and self._is_live(entry.backend) else None
        for _, status, data in await self._each("GET", f"/history/{prompt_id}", names=names):
            if status == 200 and isinstance(data, dict) and data:
                return web.json_response({k: restore_history_entry(v) for k, v in data.items()})
        return web.json_response({})

    async def post_history(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        await self._each("POST", "/history", body=body)
        return web.Response(status=200)

    async def get_jobs(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        sort_by = query.get("sort_by", "created_at").lower()
        sort_order = query.get("sort_order", "desc").lower()
        try:
            limit = int(query["limit"]) if "limit" in query else None
            offset = max(int(query.get("offset", "0")), 0)
        except ValueError:
            limit, offset = -1, 0
        params = {k: v for k, v in query.items() if k not in ("limit", "offset")}
        cursor = "after" in query and sort_by == "created_at"
        if limit is not None and limit > 0:
            params["limit"] = str(limit if cursor else offset + limit)
        elif limit is not None:
            params["limit"] = query["limit"]  # let a worker give ComfyUI's own 400
        answers = []
        for _, status, data in await self._each("GET", "/api/jobs", params=params):
            if status != 200:
                return web.json_response(data, status=status)
            if isinstance(data, dict):
                answers.append(data)
        if not answers:
            return web.json_response({"jobs": [], "pagination": {"offset": offset, "limit": limit, "total": 0, "has_more": False}})
        return web.json_response(jobs_page(answers, sort_by=sort_by, sort_order=sort_order, limit=limit, offset=offset,
                                           cursor_used=cursor))

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        entry = self.ledger.get(job_id)
        names = [entry.backend] if entry is not None and self._is_live(entry.backend) else None
        for _, status, data in await self._each("GET", f"/api/jobs/{job_id}", names=names):
            if status == 200 and isinstance(data, dict):
                return web.json_response(restore_job(data))
        return web.json_response({"error": "Job not found"}, status=404)

    async def post_interrupt(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        prompt_id = body.get("prompt_id")
        entry = self.ledger.live(str(prompt_id)) if prompt_id else None
        await self._each("POST", "/interrupt", body=body, names=[entry.backend] if entry else None)
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.StreamResponse:
        await self._each("POST", "/free", body=await self._body(request))
        return web.Response(status=200)

    async def system_stats(self, request: web.Request) -> web.StreamResponse:
        answers = await self._each("GET", "/system_stats")
        good = [(name, data) for name, status, data in answers if status == 200 and isinstance(data, dict)]
        if not good:
            return _error(503, "no_worker", "No ComfyUI worker behind this gateway is ready.")
        merged = dict(good[0][1])
        devices = []
        for name, data in good:
            for device in data.get("devices") or []:
                if isinstance(device, dict):
                    devices.append({**device, "comfyrig_worker": name})
        merged["devices"] = devices
        return web.json_response(merged)

    # -- files --------------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.StreamResponse:
        """Once per storage group, under the name the first group chose (ComfyUI renames a
        clashing upload to ``name (1).png``; every group must use the same name)."""
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        content = image.file.read()
        fields = {k: v for k, v in post.items() if k != "image" and isinstance(v, str)}
        groups: dict[str, Backend] = {}
        for name in self.live():
            groups.setdefault(self.backends[name].spec.group, self.backends[name])
        if not groups:
            return _error(503, "no_worker", "No ComfyUI worker behind this gateway is ready.")
        first, *rest = groups.values()
        status, answer = await self._upload_one(first, request.path, image.filename, image.content_type, content, fields)
        if status != 200 or not isinstance(answer, dict):
            return web.json_response(answer, status=status) if isinstance(answer, (dict, list)) else web.Response(status=status)
        same = {**fields, "overwrite": "true", "subfolder": str(answer.get("subfolder", "")), "type": str(answer.get("type", "input"))}
        await asyncio.gather(*(self._upload_one(b, request.path, str(answer.get("name")), image.content_type, content, same)
                               for b in rest), return_exceptions=True)
        return web.json_response(answer)

    async def _upload_one(self, backend: Backend, path: str, filename: str, content_type: str, content: bytes,
                          fields: dict[str, str]) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("image", content, filename=filename, content_type=content_type)
        for key, value in fields.items():
            form.add_field(key, value)
        session = self.sessions.for_url(backend.url)
        async with session.post(backend.url + path, data=form, timeout=API_TIMEOUT) as response:
            return await _decoded(response)

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        kind = query.get("type", "output")
        owner = self.ledger.backend_of_file(query.get("filename", ""), query.get("subfolder", ""), kind)
        candidates = [owner] if owner and self._is_live(owner) else []
        candidates += [n for n in self.live() if n not in candidates]
        for index, name in enumerate(candidates):
            last = index == len(candidates) - 1
            response = await self._relay_http(request, self.backends[name], pass_404=last)
            if response is not None:
                return response
        return web.Response(status=404)

    async def to_home(self, request: web.Request) -> web.StreamResponse:
        home = self.home()
        if home is None:
            return _error(503, "no_worker", "No ComfyUI worker behind this gateway is ready; try again shortly.")
        response = await self._relay_http(request, home, pass_404=True)
        assert response is not None
        return response

    async def _relay_http(self, request: web.Request, backend: Backend, *, pass_404: bool) -> web.StreamResponse | None:
        """Streams ``request`` to ``backend`` and its answer back, neither held in memory. None when
        the backend answered 404 and ``pass_404`` is off (the caller tries another)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | NOT_FORWARDED}
        if "cookie" in (k.lower() for k in headers):
            cookies = [c for c in request.headers.get("Cookie", "").split(";") if not c.strip().startswith(COOKIE + "=")]
            headers = {k: v for k, v in headers.items() if k.lower() != "cookie"}
            if any(c.strip() for c in cookies):
                headers["Cookie"] = ";".join(cookies).strip()
        session = self.sessions.for_url(backend.url)
        data = request.content if request.body_exists else None
        try:
            upstream = await session.request(request.method, backend.url + request.rel_url.path_qs, headers=headers,
                                             data=data, allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return _error(502, "worker_unreachable", f"The ComfyUI worker {backend.name} did not answer.")
        async with upstream:
            if upstream.status == 404 and not pass_404:
                return None
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            if upstream.headers.get("Content-Length") is not None and "Content-Encoding" not in upstream.headers:
                response.content_length = int(upstream.headers["Content-Length"])
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(2**16):
                await response.write(chunk)
            await response.write_eof()
            return response

    # -- websockets ---------------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(max_msg_size=2**24)
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        client = self.relay.client(sid)
        if client.socket is not None and not client.socket.closed:
            await client.socket.close()  # ComfyUI keeps one socket per client id: the newest
        client.socket, client.preview_metadata = socket, False
        await self.relay.send(client, [self.relay.status_frame(self.total_remaining(), sid)])
        pending = client.order.pending()
        if pending:
            head = self.ledger.live(pending[0])
            if head is not None and head.node is not None:  # as ComfyUI does for a client that reconnects mid-prompt
                await self.relay.send(client, [json.dumps({"type": "executing", "data": {"node": head.node}})])
        first = True
        try:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    try:
                        data = json.loads(message.data)
                    except ValueError:
                        continue
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        flags = data.get("data")
                        client.preview_metadata = isinstance(flags, dict) and bool(flags.get("supports_preview_metadata"))
                        await self.relay.send(client, [json.dumps({"type": "feature_flags", "data": self._features()})])
                    first = False
        finally:
            self.relay.disconnect(sid, socket)
        return socket

    def _features(self) -> dict[str, Any]:
        home = self.home()
        features = dict(home.features) if home is not None and home.features else {}
        features["supports_preview_metadata"] = True  # the gateway converts for clients without it
        return features

    async def _upstream(self, backend: Backend) -> None:
        """Keep one websocket open to ``backend``; it is routable exactly while this is open."""
        delay = 0.2
        base = backend.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        while True:
            sid = f"{self.sid_prefix}-{uuid.uuid4().hex[:12]}"
            url = f"{base}/ws?clientId={sid}"
            try:
                session = self.sessions.for_url(backend.url)
                async with session.ws_connect(url, heartbeat=20, max_msg_size=2**26, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
                    backend.sid = sid
                    await self._backend_up(backend)
                    delay = 0.2
                    async for message in ws:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            await self._from_backend(backend, message.data)
                        elif message.type == aiohttp.WSMsgType.BINARY:
                            await self.relay.binary(backend.name, message.data, backend.running)
                        elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            if backend.live:
                self._backend_down(backend)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _backend_up(self, backend: Backend) -> None:
        if (features := await self._object(backend, "/features")) is not None:
            backend.features = features
        await self._reconcile(backend)
        backend.live, backend.down_since = True, None
        backend.ups += 1
        self.report(BackendUp(backend.name, backend.url))
        self._tasks.append(asyncio.create_task(self._compare_nodes(backend)))

    def _backend_down(self, backend: Backend) -> None:
        backend.live, backend.down_since, backend.running = False, self.clock(), None
        self.counters["upstream_reconnects"] += 1
        self.report(BackendDown(backend.name, backend.url, len(self.ledger.in_flight(backend.name))))

    async def _from_backend(self, backend: Backend, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind, data = message.get("type"), message.get("data")
        if kind == "status" and isinstance(data, dict):
            remaining = ((data.get("status") or {}).get("exec_info") or {}).get("queue_remaining")
            if isinstance(remaining, int):
                self.ledger.set_queue_remaining(backend.name, remaining)
                await self.relay.broadcast(self.relay.status_frame(self.total_remaining()))
            return
        if kind == "feature_flags":
            return
        if kind == "execution_success":
            backend.completed += 1
        elif kind == "execution_error":
            backend.failed += 1
        elif kind == "execution_interrupted":
            backend.interrupted += 1
        if isinstance(data, dict):
            if kind == "execution_start":
                backend.running = str(data.get("prompt_id"))
            elif kind == "executing" and data.get("node") is None:
                backend.running = None
        await self.relay.text(backend.name, raw, message)

    async def _reconcile(self, backend: Backend) -> None:
        """On (re)connecting under a new client id: adopt the prompts this gateway put there before
        it restarted; a prompt submitted under an older id (whose events now go nowhere) is
        re-queued under the new one if it has not started, and watched through /history if it
        runs; one the worker lost is re-submitted, one it finished meanwhile is reported."""
        queue = await self._object(backend, "/queue")
        if queue is None:
            return
        where: dict[str, PromptState] = {}
        listed: tuple[tuple[PromptState, Any], ...] = (("running", queue.get("queue_running")), ("queued", queue.get("queue_pending")))
        for state, items in listed:
            for item in items or []:
                if not (isinstance(item, list) and len(item) > 3):
                    continue
                prompt_id, extra = str(item[1]), item[3] if isinstance(item[3], dict) else {}
                where[prompt_id] = state
                old_sid = str(extra.get("client_id", ""))
                if self.ledger.get(prompt_id) is None and old_sid.startswith(self.sid_prefix + "-"):
                    number = float(item[0])
                    self.ledger.see_number(number)
                    client_id = extra.get(CLIENT_KEY)
                    body = {"prompt": item[2], "prompt_id": prompt_id, "number": number,
                            "extra_data": {k: v for k, v in extra.items() if k not in ("client_id", "create_time")}}
                    entry = PromptEntry(prompt_id, client_id, backend.name, number, body, answer={
                        "prompt_id": prompt_id, "number": number, "node_errors": {}}, state=state, sid=old_sid)
                    self.ledger.add(entry)
                    self.relay.submitted(client_id, prompt_id)
        # Prompts it still queues that were re-submitted elsewhere while it was away: not twice.
        moved = [pid for pid, state in where.items() if state == "queued" and (e := self.ledger.live(pid)) is not None
                 and e.backend != backend.name]
        if moved:
            await self._each("POST", "/queue", body={"delete": moved}, names=[backend.name])
        for entry in self.ledger.in_flight(backend.name):
            if entry.state == "forwarding" or entry.sid == backend.sid:
                continue
            now = where.get(entry.prompt_id)
            if now == "running":
                entry.deaf = True  # the rescue loop reads its outcome from /history
            elif now == "queued":
                await self._each("POST", "/queue", body={"delete": [entry.prompt_id]}, names=[backend.name])
                await self._forward_prompt(entry, first=False)
            else:
                await self._ended_elsewhere(entry, backend)

    async def _ended_elsewhere(self, entry: PromptEntry, backend: Backend) -> bool:
        """A prompt the gateway did not hear end: from the worker's history if it is there
        (True), else re-submitted (it was lost with its worker's queue)."""
        try:
            status, history = await self._json(backend, "GET", f"/history/{entry.prompt_id}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False
        if status == 200 and isinstance(history, dict) and entry.prompt_id in history:
            await self._synthesize_end(entry, history[entry.prompt_id])
            return True
        if not entry.deaf:
            await self._resubmit(entry, backend.name)
        return False

    async def _synthesize_end(self, entry: PromptEntry, item: Any) -> None:
        """The worker finished ``entry`` while the gateway was not listening: tell its client as
        ComfyUI would have (outcome, then the last ``executing``)."""
        ok = isinstance(item, dict) and (item.get("status") or {}).get("status_str") == "success"
        now = int(time.time() * 1000)
        outcome = {"type": "execution_success" if ok else "execution_error",
                   "data": {"prompt_id": entry.prompt_id, "timestamp": now}}
        for node, output in ((item or {}).get("outputs") or {}).items() if isinstance(item, dict) else []:
            await self.relay.text(entry.backend, json.dumps({"type": "executed", "data": {"node": node, "display_node": node,
                                  "output": output, "prompt_id": entry.prompt_id}}),
                                  {"type": "executed", "data": {"node": node, "output": output, "prompt_id": entry.prompt_id}})
        for message in (outcome, {"type": "executing", "data": {"node": None, "prompt_id": entry.prompt_id}}):
            await self.relay.text(entry.backend, json.dumps(message), message)

    async def _resubmit(self, entry: PromptEntry, source: str) -> bool:
        gone = self.backends.get(source)
        target = choose_backend(self.live() or ([source] if gone is not None and gone.live else []), self.ledger, entry.client_id)
        if target is None:
            return False
        self.ledger.move(entry.prompt_id, target)
        response = await self._forward_prompt(entry, first=False)
        if response.status != 200:
            return False
        self.counters["prompts_moved"] += 1
        self.report(PromptMoved(entry.prompt_id, source, entry.backend))
        return True

    async def _rescue_loop(self) -> None:
        """Prompts of a lost worker go elsewhere after the grace; with nowhere to go for too long
        they fail, as ComfyUI reports a failed prompt. A prompt running under an older client id
        is watched through /history until it ends."""
        ticks = 0
        while True:
            await asyncio.sleep(0.25)
            ticks += 1
            now = self.clock()
            for entry in self.ledger.in_flight():
                backend = self.backends.get(entry.backend)
                if backend is None:  # removed for good: elsewhere, or fail when nothing comes up in time
                    if await self._resubmit(entry, entry.backend):
                        continue
                    if now - self._retired.get(entry.backend, now) >= self.options.requeue_timeout_s:
                        await self._fail(entry, f"its ComfyUI worker {entry.backend} left and no other worker came up "
                                                f"within {self.options.requeue_timeout_s:g} s")
                    continue
                if entry.deaf and backend.live:
                    if ticks % 4 == 0:
                        await self._ended_elsewhere(entry, backend)
                    continue
                if backend.live or backend.down_since is None or entry.state == "forwarding":
                    continue
                lost_for = now - backend.down_since
                if lost_for < self.options.lost_grace_s:
                    continue
                if await self._resubmit(entry, backend.name):
                    continue
                if lost_for >= self.options.requeue_timeout_s:
                    await self._fail(entry, f"its ComfyUI worker {backend.name} was lost and no other worker came up "
                                            f"within {self.options.requeue_timeout_s:g} s")

    async def _fail(self, entry: PromptEntry, reason: str) -> None:
        self.counters["prompts_failed"] += 1
        self.report(PromptFailed(entry.prompt_id, reason))
        now = int(time.time() * 1000)
        error = {"type": "execution_error", "data": {
            "prompt_id": entry.prompt_id, "node_id": entry.node or "", "node_type": "", "executed": [],
            "exception_message": f"comfyrig gateway: {reason}", "exception_type": "WorkerLost", "traceback": [],
            "current_inputs": {}, "current_outputs": {}, "timestamp": now}}
        for message in (error, {"type": "executing", "data": {"node": None, "prompt_id": entry.prompt_id}}):
            await self.relay.text(entry.backend, json.dumps(message), message)
        self.ledger.finished(entry.prompt_id)

    async def _compare_nodes(self, backend: Backend) -> None:
        """Warn when a worker's node types or model files differ from the first worker's: a
        prompt that uses a node or model one worker lacks fails there and not elsewhere, which
        looks random to a client (workers on machines without a shared disk drift apart)."""
        info = await self._object(backend, "/object_info")
        if info is None:
            return
        if self.backends.get(backend.name) is not backend:
            return  # removed or replaced while /object_info was on its way
        self._catalogs[backend.name] = catalog_of(info)
        reference = next(n for n in self.order if n in self._catalogs)
        others = [n for n in self._catalogs if n != reference] if backend.name == reference else [backend.name]
        for name in others:
            diff = CatalogDiff.between(self._catalogs[reference], self._catalogs[name])
            if diff and (reference, name) not in self._reported:
                self._reported.add((reference, name))
                self.report(NodesDiffer(name, reference, diff))

    # -- observability ------------------------------------------------------------------------------
    def fleet_view(self, gpus: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What the gateway sees: its workers (health, load, outcomes, restarts, GPUs), clients,
        counters, and ``gpus`` (NVML's numbers) when given."""
        view: dict[str, Any] = {
            "url": f"http://{self.options.host.split(',')[0]}:{self.options.port}",
            "auth": self.options.token is not None,
            "queue_remaining": self.total_remaining(),
            "clients": sum(1 for c in self.relay.clients.values() if c.socket is not None),
            "backends": [
                {"name": name, "url": b.url, "group": b.spec.group, "node": b.spec.node, "gpus": list(b.spec.gpus),
                 "live": b.live,
                 "running": b.running, "in_flight": len(self.ledger.in_flight(name)),
                 "queue_remaining": self.ledger.queue_remaining(name), "completed": b.completed, "failed": b.failed,
                 "interrupted": b.interrupted, "restarts": max(b.ups - 1, 0)}
                for name in self.order
                for b in (self.backends[name],)
            ],
            "counters": {**self.counters, "events_sent": self.relay.sent,
                         "frames_dropped": sum(c.order.dropped for c in self.relay.clients.values())},
        }
        if gpus is not None:
            view["gpus"] = gpus
        return view

    async def _gpus(self) -> list[dict[str, Any]] | None:
        if self.gpu_stats is None:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.gpu_stats)
        except Exception:  # noqa: BLE001  # NVML trouble must not take the fleet view down
            return None

    async def fleet(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.fleet_view(await self._gpus()))

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        from .metrics import render_metrics

        text = render_metrics(self.fleet_view(await self._gpus()))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
