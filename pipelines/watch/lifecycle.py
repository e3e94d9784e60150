"""A watcher's life in its process: a graceful stop on SIGTERM or Ctrl-C, and the liveness file.

The first signal only asks the watcher to stop: its receiving step takes no new messages and,
once the messages in hand have their rows and are deleted, ends the pipeline by raising
:class:`WatchStopped` (Beam's local runner has no other way to end an unbounded pipeline). A
second signal ends the process at once; what it held comes back after the queue's visibility
timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.console import progress

_STOP = threading.Event()


class WatchStopped(Exception):
    """Raised by the receiving step to end the pipeline once a stop was asked for."""


def stop_requested() -> bool:
    return _STOP.is_set()


def request_stop() -> None:
    _STOP.set()


@contextlib.contextmanager
def stop_gracefully() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT ask for a graceful stop; a second one ends the
    process. The previous handlers come back on exit, and the request is cleared."""
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {each: signal.getsignal(each) for each in signals}

    def stop(signum: int, _frame: Any) -> None:
        for each in signals:
            signal.signal(each, signal.SIG_DFL)
        progress(
            f"deeptrust watch: {signal.Signals(signum).name}: finishing the messages in hand, "
            "then stopping (send it again to stop at once)"
        )
        request_stop()

    _STOP.clear()
    for each in signals:
        signal.signal(each, stop)
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
        _STOP.clear()


def touch_liveness(path: str | None) -> None:
    """Rewrite ``path`` with the time now (Unix seconds), atomically; nothing when None."""
    if not path:
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(f"{time.time():.3f}\n")
    partial.replace(target)


def remove_liveness(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
