"""What the gateway reports to whoever runs it (the launch dashboard, the plain log, --json)."""

from __future__ import annotations

from dataclasses import dataclass

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
    """A worker lacks node types the home worker has (or has extra ones): prompts using them
    fail there. Names are capped for display; the counts are exact."""

    name: str
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    missing_count: int
    extra_count: int


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
