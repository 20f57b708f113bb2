"""A small synchronous client for ComfyUI's HTTP API (server.py's routes).

It takes an ``httpx.Client`` so unit tests pass ``httpx.MockTransport``; every
transport failure becomes ComfyAPIError (one exception tree).
"""

from __future__ import annotations

from typing import Any

import httpx

from ..errors import ComfyAPIError

__all__ = ["ComfyClient", "MULTIGPU_NODES"]

# Loader nodes registered by ComfyUI-MultiGPU (pollockjj/ComfyUI-MultiGPU __init__.py).
MULTIGPU_NODES = (
    "CheckpointLoaderSimpleMultiGPU",
    "UNETLoaderMultiGPU",
    "CLIPLoaderMultiGPU",
    "CheckpointLoaderSimpleDisTorch2MultiGPU",
    "UNETLoaderDisTorch2MultiGPU",
)


class ComfyClient:
    def __init__(self, base_url: str, *, http: httpx.Client | None = None, timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, timeout: float | None = None) -> Any:
        url = self.base_url + path
        try:
            response = self._http.get(url, timeout=timeout) if timeout else self._http.get(url)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPStatusError as exc:
            raise ComfyAPIError(f"ComfyUI at {self.base_url} answered {path} with HTTP {exc.response.status_code}.") from exc
        except httpx.HTTPError as exc:
            raise ComfyAPIError(f"ComfyUI at {self.base_url} did not answer {path}: {exc.__class__.__name__}.") from exc
        except ValueError as exc:
            raise ComfyAPIError(f"ComfyUI at {self.base_url} sent something that is not JSON for {path}.") from exc

    def system_stats(self) -> dict[str, Any]:
        """GET /system_stats: versions, RAM and the default device only."""
        data: dict[str, Any] = self._get("/system_stats")
        return data

    def queue_remaining(self) -> int:
        """GET /prompt: the cheapest health and load probe."""
        return int(self._get("/prompt")["exec_info"]["queue_remaining"])

    def queue(self) -> tuple[int, int]:
        """GET /queue -> (running, pending)."""
        data = self._get("/queue")
        return len(data.get("queue_running", [])), len(data.get("queue_pending", []))

    def node_classes(self) -> set[str]:
        """Names of every node class the server registered (GET /object_info)."""
        return set(self._get("/object_info", timeout=30.0))

    def multigpu_nodes(self) -> list[str]:
        classes = self.node_classes()
        return [n for n in MULTIGPU_NODES if n in classes]
