"""A small synchronous client for ComfyUI's HTTP API (server.py's routes).

It takes an ``httpx.Client`` so unit tests pass ``httpx.MockTransport``; every
transport failure becomes ComfyAPIError (one exception tree).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import ComfyAPIError

__all__ = ["ComfyClient", "MULTIGPU_NODES", "ready_stats"]

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

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request; every failure becomes ComfyAPIError (status None: no answer)."""
        url = self.base_url + path
        kwargs: dict[str, Any] = {}
        if params is not None:
            kwargs["params"] = params
        if body is not None:
            kwargs["json"] = body
        if timeout:
            kwargs["timeout"] = timeout
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ComfyAPIError(f"ComfyUI at {self.base_url} did not answer {path}: {exc.__class__.__name__}.") from exc
        if response.status_code >= 400:
            try:
                detail: Any = response.json()
            except ValueError:
                detail = None
            raise ComfyAPIError(
                f"ComfyUI at {self.base_url} answered {path} with HTTP {response.status_code}.",
                status=response.status_code,
                body=detail,
            )
        return response

    def _get(self, path: str, timeout: float | None = None) -> Any:
        return self._json(self._request("GET", path, timeout=timeout), path)

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ComfyAPIError(
                f"ComfyUI at {self.base_url} sent something that is not JSON for {path}.", status=response.status_code
            ) from exc

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
        return set(self.object_info())

    def object_info(self) -> dict[str, Any]:
        """GET /object_info: every node's schema (inputs, input_order, outputs)."""
        data = self._get("/object_info", timeout=30.0)
        if not isinstance(data, dict):
            raise ComfyAPIError(f"ComfyUI at {self.base_url} sent an /object_info that is not an object.")
        return data

    def submit(self, prompt: Mapping[str, Any], *, prompt_id: str, client_id: str | None = None) -> dict[str, Any]:
        """POST /prompt with a client-chosen ``prompt_id`` (the idempotency key).

        Raises ComfyAPIError; for an invalid prompt its ``status`` is 400 and
        ``body`` holds ComfyUI's ``{error, node_errors}``.
        """
        body: dict[str, Any] = {"prompt": prompt, "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        data = self._json(self._request("POST", "/prompt", body=body), "/prompt")
        if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
            # ComfyUI before mid-2025 ignores prompt_id and picks its own: resuming would then break.
            raise ComfyAPIError(
                f"ComfyUI at {self.base_url} did not keep the prompt id comfyrig chose.",
                hint="Update ComfyUI: client-chosen prompt ids arrived in mid-2025 (PR #8189).",
            )
        return data

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """GET /history/{prompt_id}: the finished entry, or None while unknown or unfinished."""
        data = self._get(f"/history/{prompt_id}")
        if not isinstance(data, dict):
            return None
        entry = data.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """GET /queue -> (running prompt ids, pending prompt ids)."""
        data = self._get("/queue")

        def ids(items: Any) -> list[str]:
            return [str(item[1]) for item in items or [] if isinstance(item, list) and len(item) > 1]

        return ids(data.get("queue_running")), ids(data.get("queue_pending"))

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """POST /queue {delete}: drop pending prompts (a running one is not touched)."""
        self._request("POST", "/queue", body={"delete": prompt_ids})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt, only ``prompt_id`` when given (ignored unless it runs)."""
        self._request("POST", "/interrupt", body={"prompt_id": prompt_id} if prompt_id else {})

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        """GET /view: the bytes of one output file."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        return self._request("GET", "/view", params=params, timeout=120.0).content

    def multigpu_nodes(self) -> list[str]:
        classes = self.node_classes()
        return [n for n in MULTIGPU_NODES if n in classes]


def ready_stats(url: str) -> dict[str, Any] | None:
    """ComfyUI's /system_stats once its API answers (GET /prompt first), else None.

    The readiness probe of the supervisor and of the batch fleet.
    """
    try:
        with ComfyClient(url, timeout_s=1.0) as client:
            client.queue_remaining()
            return client.system_stats()
    except ComfyAPIError:
        return None
