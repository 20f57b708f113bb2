"""Which worker runs which prompt, for whom: the gateway's one book of prompts.

Pure (no I/O, no clock of its own): the server records what it forwarded,
the upstream relays report what the workers say, and routing asks for each
worker's load. Everything the gateway knows about a prompt lives here, so a
merged read, a routed interrupt and an event relay never disagree.

Load is what the gateway itself has put on a worker and not yet seen end,
combined with the worker's own ``queue_remaining`` (another client may use
it directly): the larger of the two, so neither hides work from the router.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Ledger", "PromptEntry", "PromptState", "choose_backend"]

PromptState = Literal["forwarding", "queued", "running", "done"]
DONE_KEPT = 10_000  # finished prompts remembered for routing /view, /history/{id}, /api/jobs/{id}


@dataclass
class PromptEntry:
    """One prompt the gateway accepted.

    ``client_id`` is the id the client gave (None: a client-less prompt, whose
    events go to everyone, as ComfyUI sends them). ``body`` is what was sent to
    the worker, kept to re-submit the prompt elsewhere when its worker dies.
    """

    prompt_id: str
    client_id: str | None
    backend: str
    number: float
    body: dict[str, Any]
    answer: dict[str, Any] | None = None
    state: PromptState = "forwarding"
    node: str | None = None  # the node running now (for a client that reconnects)
    display_node: str | None = None
    outputs: list[tuple[str, str, str]] = field(default_factory=list)  # (filename, subfolder, type)
    sid: str = ""  # the gateway's client id it was submitted under (its events come on that connection)
    deaf: bool = False  # running under an older client id: its end is read from /history


class Ledger:
    """Prompts in flight and recently done, by prompt id; per-client order; per-worker load."""

    def __init__(self) -> None:
        self._live: dict[str, PromptEntry] = {}
        self._done: OrderedDict[str, PromptEntry] = OrderedDict()
        self._files: OrderedDict[tuple[str, str, str], str] = OrderedDict()  # output file -> backend
        self._queue_remaining: dict[str, int] = {}
        self._last_backend: dict[str, str] = {}  # client id -> the worker that last ran its prompt
        self._number = 0

    # -- numbering ---------------------------------------------------------------------------------
    def next_number(self, front: bool) -> float:
        """The fleet-wide queue position, as ComfyUI numbers its own queue (front: negative)."""
        number = self._number
        self._number += 1
        return float(-number if front else number)

    def see_number(self, number: float) -> None:
        """Keep numbering above what a worker already holds (after a gateway restart)."""
        self._number = max(self._number, int(abs(number)) + 1)

    # -- lifecycle of a prompt ---------------------------------------------------------------------
    def add(self, entry: PromptEntry) -> None:
        self._live[entry.prompt_id] = entry

    def get(self, prompt_id: str) -> PromptEntry | None:
        return self._live.get(prompt_id) or self._done.get(prompt_id)

    def live(self, prompt_id: str) -> PromptEntry | None:
        return self._live.get(prompt_id)

    def forget(self, prompt_id: str) -> PromptEntry | None:
        """A prompt the worker refused or never got (no trace is kept)."""
        return self._live.pop(prompt_id, None)

    def accepted(self, prompt_id: str, answer: dict[str, Any]) -> None:
        entry = self._live.get(prompt_id)
        if entry is not None:
            entry.answer = answer
            if entry.state == "forwarding":
                entry.state = "queued"

    def started(self, prompt_id: str) -> None:
        entry = self._live.get(prompt_id)
        if entry is not None and entry.state in ("forwarding", "queued"):
            entry.state = "running"

    def executing(self, prompt_id: str, node: str | None, display_node: str | None) -> None:
        entry = self._live.get(prompt_id)
        if entry is not None:
            entry.state = "running"
            entry.node, entry.display_node = node, display_node

    def output(self, prompt_id: str, backend: str, files: Iterable[tuple[str, str, str]]) -> None:
        """Files a node of ``prompt_id`` wrote on ``backend`` (for routing /view)."""
        entry = self.get(prompt_id)
        for file in files:
            if entry is not None:
                entry.outputs.append(file)
            self._files[file] = backend
            self._files.move_to_end(file)
        while len(self._files) > DONE_KEPT * 4:
            self._files.popitem(last=False)

    def finished(self, prompt_id: str) -> PromptEntry | None:
        entry = self._live.pop(prompt_id, None)
        if entry is None:
            return None
        entry.state, entry.node, entry.display_node = "done", None, None
        entry.body = {}  # the prompt itself is no longer needed; keep the book small
        if entry.client_id is not None:
            self._last_backend[entry.client_id] = entry.backend
        self._done[prompt_id] = entry
        while len(self._done) > DONE_KEPT:
            self._done.popitem(last=False)
        return entry

    def move(self, prompt_id: str, backend: str) -> None:
        """Re-submitted to ``backend`` (its worker was lost)."""
        entry = self._live.get(prompt_id)
        if entry is not None:
            entry.backend, entry.state, entry.node, entry.display_node = backend, "forwarding", None, None
            entry.deaf = False

    # -- questions ---------------------------------------------------------------------------------
    def in_flight(self, backend: str | None = None) -> list[PromptEntry]:
        """Live prompts (of ``backend``), in queue order."""
        entries = [e for e in self._live.values() if backend is None or e.backend == backend]
        return sorted(entries, key=lambda e: e.number)

    def backend_of_file(self, filename: str, subfolder: str, kind: str) -> str | None:
        return self._files.get((filename, subfolder, kind))

    def set_queue_remaining(self, backend: str, remaining: int) -> None:
        self._queue_remaining[backend] = remaining

    def queue_remaining(self, backend: str) -> int:
        return self._queue_remaining.get(backend, 0)

    def load(self, backend: str) -> int:
        ours = sum(1 for e in self._live.values() if e.backend == backend)
        return max(ours, self._queue_remaining.get(backend, 0))

    def last_backend(self, client_id: str | None) -> str | None:
        if client_id is None:
            return None
        for entry in reversed(list(self._live.values())):
            if entry.client_id == client_id:
                return entry.backend
        return self._last_backend.get(client_id)


def choose_backend(live: Sequence[str], ledger: Ledger, client_id: str | None) -> str | None:
    """The worker for a new prompt: the client's last worker when it is idle (ComfyUI's node
    cache still holds that client's models and unchanged nodes), else the least loaded, ties
    to the first in ``live`` (the fleet's order). None when no worker is live."""
    if not live:
        return None
    previous = ledger.last_backend(client_id)
    if previous is not None and previous in live and ledger.load(previous) == 0:
        return previous
    return min(live, key=lambda name: (ledger.load(name), live.index(name)))
