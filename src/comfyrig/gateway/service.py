"""Running the gateway: on its own thread next to a supervised fleet, or in the foreground.

``launch --workers`` supervises the workers on the main thread (signals are
its business) and serves the gateway from a thread with its own event loop;
``comfyrig gateway`` serves it in the foreground. Either way the gateway binds
before anything else starts, so a taken port is a clear error, not a fleet
without its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

from ..comfy.urls import local_url
from ..errors import ConfigError, PortInUseError
from ..events import Reporter, discard
from .backends import BackendSpec
from .events import GatewayEvent, GatewayStarted
from .server import GatewayOptions, GatewayServer
from .token import gateway_token

__all__ = ["GatewayThread", "backend_specs", "gateway_token"]

def backend_specs(local: Sequence[tuple[str, str, tuple[int, ...]]], urls: Sequence[str], *,
                  local_group: str = "local") -> list[BackendSpec]:
    """Local workers (name, url), which share one checkout's input folder, then the servers given
    with --url, each its own storage group (it reads its own input folder). Raises ConfigError
    for a URL that is not http(s)://host:port."""
    specs = [BackendSpec(name, url.rstrip("/"), local_group, gpus) for name, url, gpus in local]
    for n, url in enumerate(urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--url {url!r}: give a ComfyUI server as http://HOST:PORT.")
        try:
            parts.port  # noqa: B018  # a port out of range raises here
        except ValueError:
            raise ConfigError(f"--url {url!r}: the port is not a number from 1 to 65535.") from None
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        specs.append(BackendSpec(f"url-{n}", base, f"url-{n}"))
    return specs


class GatewayThread:
    """A GatewayServer on a daemon thread with its own event loop."""

    def __init__(self, backends: Sequence[BackendSpec], options: GatewayOptions,
                 reporter: Reporter[GatewayEvent] = discard,
                 gpu_stats: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.options = options
        self.specs = tuple(backends)
        self.report = reporter
        self._loop = asyncio.new_event_loop()
        self._server = GatewayServer(backends, options, reporter=reporter, gpu_stats=gpu_stats)
        self._thread = threading.Thread(target=self._loop.run_forever, name="comfyrig-gateway", daemon=True)

    @property
    def url(self) -> str:
        """How this machine reaches it: the first listen address, a wildcard through the
        loopback, an IPv6 address in brackets (``--listen ::`` or ``0.0.0.0,::`` gave no URL)."""
        return local_url(self.options.host, self.options.port)

    def start(self) -> None:
        """Bind and begin connecting to the backends. Raises PortInUseError."""
        self._thread.start()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._server.start(), self._loop)
        try:
            future.result(timeout=30)
        except OSError as err:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise PortInUseError(
                f"The gateway cannot listen on {self.options.host}:{self.options.port}: {err.strerror or err}.",
                hint="Choose another port with --port N (the workers take the ports after it).",
            ) from None
        self.report(GatewayStarted(self.url, tuple(s.name for s in self.specs), self.options.token is not None))

    def add_backend(self, spec: BackendSpec) -> None:
        """From any thread: a worker that joined (routable once its websocket opens)."""
        asyncio.run_coroutine_threadsafe(self._server.add_backend(spec), self._loop).result(timeout=10)

    def remove_backend(self, name: str) -> None:
        """From any thread: a worker that left for good; its prompts go elsewhere at once."""
        asyncio.run_coroutine_threadsafe(self._server.remove_backend(name), self._loop).result(timeout=30)

    def view(self) -> dict[str, Any] | None:
        """The gateway's fleet view, from its own loop (None when it does not answer in time)."""
        if not self._thread.is_alive():
            return None

        async def read() -> dict[str, Any]:
            return self._server.fleet_view()

        try:
            return asyncio.run_coroutine_threadsafe(read(), self._loop).result(timeout=2)
        except Exception:  # noqa: BLE001  # a view is best effort; the dashboard shows what it has
            return None

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop)
        with contextlib.suppress(Exception):  # stopping: nothing left to tell anyone
            future.result(timeout=timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
