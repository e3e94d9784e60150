"""A watcher's life in its process: the request to stop, and the liveness file.

The first SIGTERM or Ctrl-C requests a stop (``pipelines.watch.run``): the receiving step takes
no new messages and, once the messages in hand have their rows and are deleted, ends the
pipeline by raising :class:`WatchStopped` (Beam's local runner has no other way to end an
unbounded pipeline). A second signal ends the process at once; what it held comes back after
the queue's visibility timeout.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_STOP = threading.Event()
# What WatchStopped says, which Beam repeats in the errors it logs on its way out.
STOPPED = "the watcher was asked to stop"


class WatchStopped(Exception):
    """Raised by the receiving step to end the pipeline once a stop was asked for."""


def stop_requested() -> bool:
    return _STOP.is_set()


def request_stop() -> None:
    _STOP.set()


@contextlib.contextmanager
def stop_cleared() -> Iterator[None]:
    """No stop requested at the start of the block, nor after it (a watcher run in-process,
    then another)."""
    _STOP.clear()
    try:
        yield
    finally:
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
