"""The ComfyUI servers behind the gateway, and how the gateway reaches them.

A backend is one ComfyUI: a worker comfyrig started or a server given with
``--url``. Its ``group`` names the folders it reads uploads from: the workers
of one checkout share its ``input/`` folder (one group), a server elsewhere has
its own, so an upload is written once per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..comfy.urls import env_proxy_allowed

__all__ = ["Backend", "BackendSpec", "Sessions"]


@dataclass(frozen=True)
class BackendSpec:
    name: str
    url: str  # http://host:port, no trailing slash
    group: str  # storage group: backends that see the same input folder
    gpus: tuple[int, ...] = ()  # the physical (nvidia-smi) GPUs it computes on, when known
    node: str = ""  # the cluster node it runs on (Ray: host and node id), shown in the fleet view


@dataclass
class Backend:
    """A backend and what the gateway knows of it now (changed on the gateway's loop only)."""

    spec: BackendSpec
    live: bool = False  # its websocket to the gateway is open: prompts may go there
    down_since: float | None = None  # monotonic time it was lost (None: never up, or up)
    features: dict[str, Any] = field(default_factory=dict)
    running: str | None = None  # the prompt it runs now, for frames that carry no prompt id
    sid: str = ""  # the client id of the gateway's open connection to it
    completed: int = 0  # prompts it reported, by outcome (any client's, as its websocket shows them)
    failed: int = 0
    interrupted: int = 0
    ups: int = 0  # times it became routable; more than once: it was lost and came back

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url


class Sessions:
    """Two HTTP client sessions: one that never uses a proxy (loopback backends: the proxy of a
    cluster's environment would answer instead of the ComfyUI next door), one that follows the
    environment's proxy settings (remote backends), as comfyrig's one proxy rule says."""

    def __init__(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        # auto_decompress off: bodies are relayed as the backend encoded them, with its headers.
        self.direct = aiohttp.ClientSession(timeout=timeout, trust_env=False, auto_decompress=False)
        self.env = aiohttp.ClientSession(timeout=timeout, trust_env=True, auto_decompress=False)

    def for_url(self, url: str) -> aiohttp.ClientSession:
        return self.env if env_proxy_allowed(url) else self.direct

    async def close(self) -> None:
        await self.direct.close()
        await self.env.close()
