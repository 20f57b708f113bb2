"""Polling the watched ComfyUI instances: one small request each per tick.

The request is ``GET /prompt`` (a few bytes: ``queue_remaining``) rather than
``GET /queue``, whose answer carries every queued workflow and grows with a
batch; ComfyUI runs one prompt at a time, so the two give the same counts.
Instances are polled in parallel so one that hangs delays a tick by at most
the probe timeout, not by the timeout times the number of instances.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from ..comfy.client import ComfyClient, probe_http_client
from ..comfy.urls import comfy_url
from ..errors import ComfyAPIError, ComfyUnreachable, ConfigError
from .snapshot import InstanceSample, InstanceState

__all__ = ["InstancePoller", "normalise_url"]


def normalise_url(url: str) -> str:
    """"127.0.0.1:8188" -> "http://127.0.0.1:8188"; raises ConfigError for a non-URL (the one
    rule of ``comfy.urls.comfy_url``, shared with ``batch --url``)."""
    return comfy_url(url, "--url")


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


Discover = Callable[[], Mapping[str, str] | None]


class InstancePoller:
    """Keeps each instance's last error across ticks.

    ``http`` builds the httpx client for a URL (tests pass one over MockTransport); the
    default applies comfyrig's proxy rule with the probe timeout. Raises ConfigError for
    a proxy setting that cannot be used for one of the URLs. ``labels`` say what a URL is;
    ``discover`` (asked each tick) gives instances that come and go, URL -> label: the
    workers behind a Ray gateway, whose URLs change when Ray restarts them elsewhere (None:
    it could not say this tick, the last list is kept).
    """

    def __init__(
        self,
        urls: Sequence[str],
        http: Callable[[str], httpx.Client] = probe_http_client,
        clock: Callable[[], float] = time.time,
        *,
        labels: Mapping[str, str] | None = None,
        discover: Discover | None = None,
    ) -> None:
        self.fixed = tuple(urls)
        self.urls = self.fixed
        self._http = http
        self._labels = dict(labels or {})
        self._discover = discover
        self._clients = {url: ComfyClient(url, http=http(url)) for url in self.urls}
        self._clock = clock
        self._last_error: dict[str, str] = {}
        many = len(self.urls) > 1 or discover is not None
        self._pool = ThreadPoolExecutor(max_workers=8 if discover else min(len(self.urls), 8)) if many else None

    def poll(self) -> tuple[InstanceSample, ...]:
        self._refresh()
        if self._pool is None:
            return tuple(self._one(url) for url in self.urls)
        return tuple(self._pool.map(self._one, self.urls))

    def _refresh(self) -> None:
        found = self._discover() if self._discover is not None else None
        if found is None:
            return
        urls = (*self.fixed, *(u for u in found if u not in self.fixed))
        for url in set(self._clients) - set(urls):
            self._clients.pop(url).close()
            self._labels.pop(url, None)
            self._last_error.pop(url, None)
        self._labels.update(found)
        kept = []
        for url in urls:
            if url not in self._clients:
                try:
                    self._clients[url] = ComfyClient(url, http=self._http(url))
                except ConfigError as exc:  # a proxy rule that cannot serve a worker's new address
                    self._last_error[url] = exc.message
                    continue
            kept.append(url)
        self.urls = tuple(kept)

    def _one(self, url: str) -> InstanceSample:
        try:
            counts = self._clients[url].prompt_counts()
        except ComfyAPIError as exc:
            state: InstanceState = "down" if isinstance(exc, ComfyUnreachable) else "error"
            stamp = time.strftime("%H:%M:%S", time.localtime(self._clock()))
            # The table shows the URL already; keep the route and the reason.
            self._last_error[url] = f"{stamp} {exc.message.removeprefix(url)}"
            return InstanceSample(url=url, state=state, last_error=self._last_error[url], port=_port(url),
                                  label=self._labels.get(url))
        return InstanceSample(
            url=url,
            state="up",
            running=counts.running,
            pending=counts.pending,
            last_error=self._last_error.get(url),
            port=_port(url),
            label=self._labels.get(url),
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        for client in self._clients.values():
            client.close()
