"""One client's events in the order ComfyUI would send them.

ComfyUI runs one prompt at a time, so a client of one server never sees a
prompt's events before its previous prompt ended; clients rely on it (Krita AI
Diffusion keeps one "active" job per connection, the web frontend one running
prompt for its progress bar). Behind the gateway a client's prompts may run at
once on several GPUs, so the events of a later prompt wait here until every
earlier prompt of that client has sent its last event (``executing`` with
``node: null``). The work itself is not held back: it runs; only its report
waits.

While waiting, progress and preview frames are kept up to a byte budget and
dropped beyond it (they are stale by the time they could be shown); the events
that carry results and outcomes are always kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["ClientOrder", "Frame"]

Frame = str | bytes  # a websocket message, already encoded
HELD_BYTES = 32 * 2**20  # droppable bytes held per client while its earlier prompts run


@dataclass
class _Held:
    frames: list[Frame] = field(default_factory=list)
    used: int = 0  # bytes of droppable frames among them
    ended: bool = False


class ClientOrder:
    """The prompts of one client, oldest first, and the frames held for the later ones."""

    def __init__(self, held_bytes: int = HELD_BYTES) -> None:
        self._prompts: deque[str] = deque()
        self._held: dict[str, _Held] = {}
        self._budget = held_bytes
        self._used = 0
        self.dropped = 0  # frames dropped for the budget (reported in the gateway's metrics)

    def submitted(self, prompt_id: str) -> None:
        if prompt_id not in self._held:
            self._prompts.append(prompt_id)
            self._held[prompt_id] = _Held()

    def pending(self) -> list[str]:
        return list(self._prompts)

    def route(self, prompt_id: str | None, frame: Frame, *, droppable: bool = False) -> list[Frame]:
        """The frames to send now: ``frame`` itself when its prompt is the oldest (or not this
        client's), nothing when it has to wait."""
        if prompt_id is None or prompt_id not in self._held or self._prompts[0] == prompt_id:
            return [frame]
        held = self._held[prompt_id]
        if droppable:
            if self._used + len(frame) > self._budget:
                self.dropped += 1
                return []
            self._used += len(frame)
            held.used += len(frame)
        held.frames.append(frame)
        return []

    def ended(self, prompt_id: str) -> list[Frame]:
        """``prompt_id`` sent its last event (or will never run): the frames now due, of the
        prompts that become the oldest."""
        held = self._held.get(prompt_id)
        if held is None:
            return []
        held.ended = True
        due: list[Frame] = []
        while self._prompts and self._held[self._prompts[0]].ended:
            self._release(self._prompts.popleft(), due)
        if self._prompts:
            self._release(self._prompts[0], due, keep=True)
        return due

    def _release(self, prompt_id: str, due: list[Frame], keep: bool = False) -> None:
        held = self._held[prompt_id]
        due.extend(held.frames)
        self._used -= held.used
        held.frames, held.used = [], 0
        if not keep:
            del self._held[prompt_id]
