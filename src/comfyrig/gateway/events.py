"""What the gateway reports to whoever runs it (the launch dashboard, the plain log, --json)."""

from __future__ import annotations

from dataclasses import dataclass

from ..comfy.catalog import CatalogDiff

__all__ = [
    "BackendDown",
    "BackendUp",
    "GatewayEvent",
    "GatewayStarted",
    "NodesDiffer",
    "PromptFailed",
    "PromptMoved",
]


@dataclass(frozen=True)
class GatewayStarted:
    url: str
    backends: tuple[str, ...]
    auth: bool


@dataclass(frozen=True)
class BackendUp:
    name: str
    url: str


@dataclass(frozen=True)
class BackendDown:
    name: str
    url: str
    in_flight: int  # prompts it held that will be re-submitted elsewhere


@dataclass(frozen=True)
class NodesDiffer:
    """A worker lacks node types or model files the first worker (``reference``) lists, or has
    ones it lacks: prompts using them fail only where they are routed."""

    name: str
    reference: str
    diff: CatalogDiff


@dataclass(frozen=True)
class PromptMoved:
    prompt_id: str
    source: str
    target: str


@dataclass(frozen=True)
class PromptFailed:
    prompt_id: str
    reason: str


GatewayEvent = GatewayStarted | BackendUp | BackendDown | NodesDiffer | PromptMoved | PromptFailed
