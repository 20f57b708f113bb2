"""Signal handlers that only enqueue, installed for a block and restored after it.

As uvicorn's ``capture_signals``: the handler hands the signal number to the
service's loop (which decides what a first and a second Ctrl-C mean), and the
previous handlers come back when the block ends, so a library caller (a test,
a notebook, a Ray worker) is left as it was.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "capture_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def capture_signals(handler: Callable[[int], None], signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Route ``signals`` to ``handler(signum)`` inside the block. Off the main thread
    (where Python allows no handlers) it installs nothing and the caller stops by other means."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, lambda signum, _frame: handler(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
