"""Where the workers come from: given URLs, a local fleet, or a Ray cluster (ray_backend.py).

A backend starts its servers, hands the dispatcher one Endpoint per worker,
can fetch /object_info from the first worker that answers (to convert a
UI-format workflow and check values against the schemas), and stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..comfy.client import ComfyClient
from ..errors import ComfyAPIError, LaunchError
from ..events import Reporter, discard
from ..launch.events import SupervisorEvent
from ..launch.fleet import Fleet
from ..launch.plan import LaunchPlan
from ..launch.supervisor import SupervisorOptions
from .events import BatchEvent, FleetNews
from .protocol import Emit, Endpoint, OutputSink
from .worker import HttpWorker

__all__ = ["Backend", "FleetBackend", "UrlBackend", "wait_object_info"]


class Backend(Protocol):
    kind: str

    def members(self) -> list[tuple[str, str, str]]:
        """(name, url, label) of every worker; a dry run lists them without starting any."""

    def start(self, client_id: str, reporter: Reporter[BatchEvent] = discard) -> None:
        """Start (or join) the workers; ``client_id`` is the websocket id jobs are sent with;
        ``reporter`` gets the news of starting them (a fleet's supervisor events, from its thread)."""

    def endpoints(self, emit: Emit, sink: OutputSink) -> list[Endpoint]: ...
    def object_info(self, timeout_s: float) -> dict[str, Any]: ...
    def stop(self) -> None: ...


def wait_object_info(urls: list[str], timeout_s: float, *, alive: Callable[[], bool] = lambda: True,
                     what: str = "worker") -> dict[str, Any]:
    """/object_info of the first URL that answers; LaunchError when none does within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        for url in urls:
            try:
                with ComfyClient(url, timeout_s=5.0) as client:
                    client.queue_remaining()
                    return client.object_info()
            except ComfyAPIError as exc:
                last = exc.message
        if time.monotonic() > deadline or not alive():
            raise LaunchError(f"No {what} answered within {timeout_s:g} s ({last}).")
        time.sleep(0.25)  # polling a server that is starting; not a test wait


class UrlBackend:
    """ComfyUI servers that already run (``--url``, repeatable)."""

    kind = "url"

    def __init__(self, urls: list[str]) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.client_id = ""

    def members(self) -> list[tuple[str, str, str]]:
        names = []
        for n, url in enumerate(self.urls):
            names.append((f"url-{n}", url, url.split("://", 1)[-1]))
        return names

    def start(self, client_id: str, reporter: Reporter[BatchEvent] = discard) -> None:
        self.client_id = client_id

    def endpoints(self, emit: Emit, sink: OutputSink) -> list[Endpoint]:
        return [HttpWorker(name, url, label, client_id=self.client_id, emit=emit, sink=sink) for name, url, label in self.members()]

    def object_info(self, timeout_s: float) -> dict[str, Any]:
        # These servers already run: a URL that does not answer soon is more likely a typo
        # than a slow start, so do not wait the full start-up allowance.
        return wait_object_info(self.urls, min(timeout_s, 15.0), what="--url server")

    def stop(self) -> None:
        pass


class FleetBackend:
    """One ComfyUI per selected GPU on this machine (``--cpu``: one on the CPU)."""

    kind = "fleet"

    def __init__(self, plan: LaunchPlan, environ: Mapping[str, str], options: SupervisorOptions) -> None:
        self.fleet = Fleet(plan, environ, options, reporter=self._news)
        self.client_id = ""
        self._reporter: Reporter[BatchEvent] = discard

    def _news(self, event: SupervisorEvent) -> None:
        # Called on the fleet's thread; the reporter must not block (events.Reporter).
        self._reporter(FleetNews(event))

    def members(self) -> list[tuple[str, str, str]]:
        return self.fleet.members

    def start(self, client_id: str, reporter: Reporter[BatchEvent] = discard) -> None:
        self.client_id = client_id
        self._reporter = reporter
        self.fleet.start()

    def endpoints(self, emit: Emit, sink: OutputSink) -> list[Endpoint]:
        return [
            HttpWorker(
                name, url, label, client_id=self.client_id, emit=emit, sink=sink,
                is_gone=lambda name=name: self.fleet.is_gone(name),  # type: ignore[misc]
                is_ready=lambda name=name: self.fleet.is_ready(name),  # type: ignore[misc]
                on_restart=lambda name=name: self.fleet.restart(name),  # type: ignore[misc]
            )
            for name, url, label in self.members()
        ]

    def object_info(self, timeout_s: float) -> dict[str, Any]:
        def alive() -> bool:
            return not all(self.fleet.is_gone(name) for name, _, _ in self.members())

        try:
            return wait_object_info([url for _, url, _ in self.members()], timeout_s, alive=alive, what="local ComfyUI")
        except LaunchError as exc:
            gone = [f"{name}: {self.fleet.why_gone(name)} (log: {self.fleet.log_file(name)})"
                    for name, _, _ in self.members() if self.fleet.is_gone(name)]
            if gone:
                raise LaunchError("No local ComfyUI became ready. " + "; ".join(gone)) from exc
            raise

    def stop(self) -> None:
        self.fleet.stop()
