"""The one client of ComfyUI's HTTP API (the routes of ComfyUI's server.py).

Every part of comfyrig that talks to ComfyUI over HTTP uses it: launch's readiness probe,
the batch workers, monitor, doctor and status. Failures are mapped in one place
(``ComfyClient._send`` and ``_json``) onto the tree of ``comfyrig.errors``::

    ComfyAPIError          it answered, but not as ComfyUI: not JSON, or not the expected shape
    ├── ComfyUnreachable   nothing answered: refused, timed out, DNS, connection closed; status None
    └── ComfyHTTPError     it answered HTTP >= 400: ``status``, ``body`` (decoded JSON or None)

Messages start with the URL and route ("http://127.0.0.1:8188/prompt: ...") and are shown
to people as they are. Proxies follow the one rule of ``urls.env_proxy_allowed``, applied
by ``http_client``. Tests pass ``http=httpx.Client(transport=httpx.MockTransport(handler))``.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from ..errors import ComfyAPIError, ComfyHTTPError, ComfyUnreachable, ConfigError
from .history import summarize_400
from .multigpu import NATIVE_NODES, PACK_LOADERS, MultiGpuFinding, finding_from, pack_nodes
from .urls import env_proxy_allowed

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MULTIGPU_NODES",
    "PROBE_TIMEOUT_S",
    "ComfyClient",
    "Job",
    "JobState",
    "QueueCounts",
    "Submitted",
    "http_client",
    "probe_http_client",
    "ready_stats",
]

DEFAULT_TIMEOUT_S = 2.0  # seconds; a ComfyUI answers its small routes in about a millisecond
# Probes (readiness, monitor ticks, doctor, status) wait less: a probe that takes longer
# than a monitor tick is useless, and "no answer in a second" is what they report.
PROBE_TIMEOUT_S = 1.0
OBJECT_INFO_TIMEOUT_S = 30.0  # every node's schema: slow on a ComfyUI with many node packs
VIEW_TIMEOUT_S = 120.0  # one output file; videos are large
VIEW_CHUNK = 1024 * 1024  # bytes read and written at a time by view_stream

# Node classes that put work on a GPU other than cuda:0: ComfyUI's own (0.23+, comfy/multigpu.py's
# catalogue says what each does), then ComfyUI-MultiGPU's best-known loaders (it has more, all
# ending in "MultiGPU", which ``multigpu_nodes`` finds too).
MULTIGPU_NODES = (*(n.name for n in NATIVE_NODES), *PACK_LOADERS)


@dataclass(frozen=True)
class QueueCounts:
    """Prompts executing now and waiting. ComfyUI runs one prompt at a time."""

    running: int
    pending: int

    @property
    def remaining(self) -> int:
        """What ComfyUI calls ``queue_remaining``: running plus pending."""
        return self.running + self.pending


@dataclass(frozen=True)
class Submitted:
    """ComfyUI's answer to an accepted ``POST /prompt``."""

    prompt_id: str
    number: float  # the queue position ComfyUI gave it (an int unless the client sent one)
    node_errors: Mapping[str, Any]  # errors of output nodes that were left out, if any


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs ~20 ms, and the readiness probe
    # builds a client four times a second per starting ComfyUI.
    return httpx.create_ssl_context()


def http_client(
    base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An ``httpx.Client`` for the ComfyUI at ``base_url``, with the one proxy rule.

    A loopback host (127.0.0.0/8, ::1, localhost) is reached directly whatever the
    environment says (``trust_env=False``); any other host honours the environment,
    HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY included (httpx reads them).
    ``timeout_s``: seconds for each of connect, read, write and pool; ``transport``
    replaces the network (tests), and then no proxy applies.

    Raises ConfigError when a proxy variable that applies cannot be used (a SOCKS proxy
    without httpx's socks extra, an unknown scheme).
    """
    trust_env = env_proxy_allowed(base_url)
    try:
        return httpx.Client(timeout=timeout_s, trust_env=trust_env, transport=transport, verify=_ssl_context())
    except (ImportError, ValueError, httpx.InvalidURL) as exc:
        host = urlsplit(base_url).hostname or base_url
        raise ConfigError(
            f"The proxy set in the environment for {base_url} cannot be used: {exc}",
            hint=f"Add {host} to NO_PROXY to reach it directly, or fix HTTP_PROXY/HTTPS_PROXY/ALL_PROXY.",
        ) from exc


def probe_http_client(base_url: str) -> httpx.Client:
    """``http_client`` with the probe timeout (``PROBE_TIMEOUT_S``): what monitor and doctor use."""
    return http_client(base_url, timeout_s=PROBE_TIMEOUT_S)


# What a ComfyUI knows of one prompt. "unknown": not queued, not running, no history (never
# submitted here, or this ComfyUI restarted since: its history lives in memory only).
JobState = Literal["pending", "running", "finished", "unknown"]


@dataclass(frozen=True)
class Job:
    """One prompt's state on a server; ``entry`` (finished only) has a history entry's shape,
    ``{outputs, status}``, whichever route it came from: read it with ``comfy.history``."""

    state: JobState
    entry: Mapping[str, Any] | None = None


def _proxy_hint(base_url: str) -> str | None:
    """A second sentence for errors when a proxy from the environment probably sits in
    between (a dead or refusing proxy looks like a dead ComfyUI)."""
    host = urlsplit(base_url).hostname
    if host is None or not env_proxy_allowed(base_url):
        return None
    proxies = urllib.request.getproxies()
    if not any(proxies.get(scheme) for scheme in ("http", "https", "all")) or urllib.request.proxy_bypass(host):
        return None
    return (f"A proxy is set in the environment (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) and {host} is not in "
            f"NO_PROXY, so requests go through the proxy; add {host} to NO_PROXY to reach it directly.")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _decoded(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        return None


def _detail(body: Any) -> str:
    """What a JSON error body says, for the message: ComfyUI's ``{error, node_errors}``."""
    if not isinstance(body, dict) or not ("error" in body or "node_errors" in body):
        return ""
    reason = summarize_400(body)
    where = f" (node {reason['node']}, {reason.get('class_type')})" if reason.get("node") else ""
    return f": {reason['message']}{where}"


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class ComfyClient:
    """One ComfyUI server at ``base_url`` (``http://host:port``).

    ``http`` replaces the client ``http_client(base_url, timeout_s=timeout_s)`` would build
    (tests pass one over ``httpx.MockTransport``); either way ``close()`` closes it. Every
    method raises ComfyAPIError (see the module docstring for the split). The constructor
    raises ConfigError for a URL that is not http(s), or a proxy setting that cannot be used.
    """

    def __init__(self, base_url: str, *, http: httpx.Client | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{base_url!r} is not an http(s) URL such as http://127.0.0.1:8188.")
        self.base_url = base_url.strip().rstrip("/")
        self._http = http if http is not None else http_client(self.base_url, timeout_s=timeout_s)
        self._hint = _proxy_hint(self.base_url) if self._http.trust_env else None
        self._jobs_api: bool | None = None  # ComfyUI >= 0.24's /api/jobs; None: not known yet

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one place where failures become ComfyAPIError ------------------------------------------
    def _send(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        url = self.base_url + route
        kwargs: dict[str, Any] = {}
        if params is not None:
            kwargs["params"] = params
        if body is not None:
            kwargs["json"] = body
        if timeout_s is not None:
            kwargs["timeout"] = timeout_s
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise self._map_error(url, exc) from exc
        self._raise_for_status(url, response)
        return response

    def _map_error(self, url: str, exc: httpx.HTTPError) -> ComfyAPIError:
        """The one split of httpx's errors: no answer (unreachable) or an unreadable one."""
        if isinstance(exc, httpx.TimeoutException):
            return ComfyUnreachable(f"{url}: no answer within the timeout ({type(exc).__name__}).", hint=self._hint)
        if isinstance(exc, httpx.TransportError):  # refused, DNS, reset, closed mid-answer, proxy errors
            return ComfyUnreachable(f"{url}: nothing answers ({_reason(exc)}).", hint=self._hint)
        return ComfyAPIError(f"{url}: the answer could not be read ({_reason(exc)}).")  # it answered, undecodable

    def _raise_for_status(self, url: str, response: httpx.Response) -> None:
        status = response.status_code
        if status >= 400:
            decoded = _decoded(response)
            # A proxy's own error page (no JSON) deserves the proxy hint; ComfyUI's 400 does not.
            hint = self._hint if decoded is None and (status >= 500 or status == 407) else None
            status_line = f"HTTP {status} {response.reason_phrase}".rstrip()
            raise ComfyHTTPError(
                f"{url}: {status_line}{_detail(decoded)}.",
                status=status,
                body=decoded,
                hint=hint,
            )

    def _json(self, response: httpx.Response, route: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ComfyAPIError(f"{self.base_url}{route}: the answer is not JSON, so this is probably not ComfyUI.") from exc

    def _get(self, route: str, *, timeout_s: float | None = None) -> Any:
        return self._json(self._send("GET", route, timeout_s=timeout_s), route)

    def _not_comfyui(self, route: str, what: str) -> ComfyAPIError:
        return ComfyAPIError(f"{self.base_url}{route}: {what} in the answer, so this is probably not ComfyUI.")

    # -- reading ----------------------------------------------------------------------------------
    def prompt_counts(self) -> QueueCounts:
        """``GET /prompt`` -> running and pending, from ``exec_info.queue_remaining``.

        The cheapest health and load probe (a few bytes whatever the queue holds). ComfyUI
        runs prompts on one thread, so at most one runs and the rest of the count waits.
        """
        remaining = self.queue_remaining()
        running = min(remaining, 1)
        return QueueCounts(running=running, pending=remaining - running)

    def queue_remaining(self) -> int:
        """``GET /prompt`` -> ``exec_info.queue_remaining``: prompts running plus waiting."""
        data = self._get("/prompt")
        exec_info = data.get("exec_info") if isinstance(data, dict) else None
        remaining = _count(exec_info.get("queue_remaining")) if isinstance(exec_info, dict) else None
        if remaining is None:
            raise self._not_comfyui("/prompt", "no exec_info.queue_remaining count")
        return remaining

    def _queue_lists(self) -> tuple[list[Any], list[Any]]:
        data = self._get("/queue")
        running = data.get("queue_running") if isinstance(data, dict) else None
        pending = data.get("queue_pending") if isinstance(data, dict) else None
        if not isinstance(running, list) or not isinstance(pending, list):
            raise self._not_comfyui("/queue", "no queue_running/queue_pending lists")
        return running, pending

    def queue(self) -> QueueCounts:
        """``GET /queue`` -> counts. Its answer carries every queued workflow, so it grows with
        the queue: probes use ``prompt_counts`` instead."""
        running, pending = self._queue_lists()
        return QueueCounts(running=len(running), pending=len(pending))

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """``GET /queue`` -> (running prompt ids, pending prompt ids).

        Each queue item is ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``.
        """
        running, pending = self._queue_lists()

        def ids(items: list[Any]) -> list[str]:
            return [str(item[1]) for item in items if isinstance(item, list) and len(item) > 1]

        return ids(running), ids(pending)

    def system_stats(self) -> dict[str, Any]:
        """``GET /system_stats`` -> ``{system: {comfyui_version, pytorch_version, ...}, devices: [...]}``."""
        data = self._get("/system_stats")
        if not isinstance(data, dict) or not isinstance(data.get("system"), dict):
            raise self._not_comfyui("/system_stats", "no 'system' object")
        return data

    def object_info(self) -> dict[str, Any]:
        """``GET /object_info`` -> every node class's schema (input, input_order, output, ...)."""
        data = self._get("/object_info", timeout_s=OBJECT_INFO_TIMEOUT_S)
        if not isinstance(data, dict):
            raise self._not_comfyui("/object_info", "no object of node classes")
        return data

    def node_classes(self) -> set[str]:
        """Names of every node class the server registered (``GET /object_info``)."""
        return set(self.object_info())

    def multigpu_nodes(self) -> list[str]:
        """The multi-GPU node classes the server has: ComfyUI's own, then ComfyUI-MultiGPU's."""
        info = self.object_info()
        return [*(n.name for n in NATIVE_NODES if n.name in info), *pack_nodes(info)]

    def multigpu_finding(self) -> MultiGpuFinding:
        """``GET /object_info`` and ``GET /system_stats`` read as a ``MultiGpuFinding``: which
        multi-GPU nodes it registered and which torch devices it lists."""
        return finding_from(self.object_info(), self.system_stats())

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """``GET /history/{prompt_id}`` -> the entry of a finished prompt; None while it is
        queued, running or unknown. Read it with ``comfy.history``."""
        route = f"/history/{quote(prompt_id, safe='')}"
        data = self._get(route)
        if not isinstance(data, dict):
            raise self._not_comfyui(route, "no object of history entries")
        entry = data.get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise self._not_comfyui(route, f"no object for prompt {prompt_id}")
        return entry

    def job(self, prompt_id: str) -> Job:
        """Where ``prompt_id`` stands: pending, running, finished (with its entry) or unknown.

        ComfyUI 0.24 answers it in one small request (``GET /api/jobs/{id}``); older ones
        need ``/history/{id}`` and ``GET /queue``, whose answer carries every queued
        workflow (large behind a long queue). Which one a server has is learnt from its
        first answer: a 404 in ComfyUI's JSON means "no such job", aiohttp's plain 404
        means the route does not exist there.
        """
        if self._jobs_api is not False:
            route = f"/api/jobs/{quote(prompt_id, safe='')}"
            try:
                data = self._get(route)
            except ComfyHTTPError as exc:
                if exc.status != 404:
                    raise
                self._jobs_api = isinstance(exc.body, dict) and "error" in exc.body
                if self._jobs_api:
                    return Job("unknown")
            else:
                self._jobs_api = True
                return self._job_from_api(route, data)
        entry = self.history(prompt_id)
        if entry is None:
            running, pending = self.queue_ids()
            if prompt_id in running:
                return Job("running")
            if prompt_id in pending:
                return Job("pending")
            entry = self.history(prompt_id)  # it may have finished between the two looks
        return Job("finished", entry) if entry is not None else Job("unknown")

    def _job_from_api(self, route: str, data: Any) -> Job:
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise self._not_comfyui(route, "no job status")
        status = data["status"]
        if status == "pending":
            return Job("pending")
        if status == "in_progress":
            return Job("running")
        if status in ("completed", "failed", "cancelled"):
            outputs = data.get("outputs")
            execution = data.get("execution_status")
            return Job("finished", {"outputs": outputs if isinstance(outputs, dict) else {},
                                    "status": execution if isinstance(execution, dict) else {}})
        raise self._not_comfyui(route, f"an unknown job status {status!r}")

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        """``GET /view``: the bytes of one file (``kind``: output, input or temp)."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        return self._send("GET", "/view", params=params, timeout_s=VIEW_TIMEOUT_S).content

    @contextlib.contextmanager
    def view_stream(self, filename: str, subfolder: str = "", kind: str = "output") -> Iterator[Iterator[bytes]]:
        """``GET /view`` as chunks of at most ``VIEW_CHUNK`` bytes, read as they are consumed, so a
        400 MB video never sits in memory. The errors are ``view``'s, also for a connection that
        breaks in the middle of the body."""
        url = self.base_url + "/view"
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        try:
            with self._http.stream("GET", url, params=params, timeout=VIEW_TIMEOUT_S) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for_status(url, response)
                yield self._chunks(url, response)
        except httpx.HTTPError as exc:
            raise self._map_error(url, exc) from exc

    def _chunks(self, url: str, response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(VIEW_CHUNK)
        except httpx.HTTPError as exc:
            raise self._map_error(url, exc) from exc

    # -- acting -----------------------------------------------------------------------------------
    def submit(self, prompt: Mapping[str, Any], *, prompt_id: str, client_id: str | None = None) -> Submitted:
        """``POST /prompt`` with a client-chosen ``prompt_id`` (the idempotency key).

        A rejected prompt raises ComfyHTTPError with ``status`` 400 and ``body`` ComfyUI's
        ``{error, node_errors}`` (``comfy.history.summarize_400`` reads it).
        """
        body: dict[str, Any] = {"prompt": prompt, "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        data = self._json(self._send("POST", "/prompt", body=body), "/prompt")
        if not isinstance(data, dict) or "prompt_id" not in data:
            raise self._not_comfyui("/prompt", "no prompt_id")
        if data["prompt_id"] != prompt_id:
            # ComfyUI before mid-2025 ignores prompt_id and picks its own: resuming would then break.
            raise ComfyAPIError(
                f"{self.base_url}/prompt: ComfyUI did not keep the prompt id comfyrig chose.",
                hint="Update ComfyUI: client-chosen prompt ids arrived in mid-2025 (PR #8189).",
            )
        number = data.get("number")
        node_errors = data.get("node_errors")
        return Submitted(
            prompt_id=prompt_id,
            number=number if isinstance(number, (int, float)) and not isinstance(number, bool) else 0,
            node_errors=node_errors if isinstance(node_errors, dict) else {},
        )

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """``POST /queue {delete}``: drop waiting prompts (a running one is not touched)."""
        self._send("POST", "/queue", body={"delete": prompt_ids})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``; with ``prompt_id``, only that prompt (ignored unless it runs)."""
        self._send("POST", "/interrupt", body={"prompt_id": prompt_id} if prompt_id else {})


def ready_stats(url: str) -> dict[str, Any] | None:
    """ComfyUI's ``/system_stats`` once its API answers (``GET /prompt`` first), else None.

    The readiness probe of launch's supervisor and of the batch fleet. Raises ConfigError
    only for a proxy setting that cannot be used (never for a loopback URL).
    """
    try:
        with ComfyClient(url, timeout_s=PROBE_TIMEOUT_S) as client:
            client.queue_remaining()
            return client.system_stats()
    except ComfyAPIError:
        return None
