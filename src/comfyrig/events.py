"""Services report, the edge renders: the one reporter protocol.

A service (launch, the batch, install) never prints. It takes a ``Reporter``,
a callable that receives the service's typed events (frozen dataclasses in a
union, matched with ``match`` by whoever renders them), as honcho's manager
takes a ``printer``. Only ``cli/`` and ``ui/`` turn events into Rich
renderables, plain lines or JSON; tests pass a list's ``append``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["Reporter", "discard"]

E_contra = TypeVar("E_contra", contravariant=True)


class Reporter(Protocol[E_contra]):
    """Receives one event; must not block (the supervision loop calls it)."""

    def __call__(self, event: E_contra, /) -> None: ...


def discard(event: object, /) -> None:
    """The reporter of a caller that wants no events."""
