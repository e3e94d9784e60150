"""Progress lines for long work: how far it is, and an ETA."""

from __future__ import annotations

import time


def eta_text(started: float, done: int, total: int) -> str:
    """``ETA 3m05s``: the time left if the rest goes as fast as what is done since
    ``started`` (a ``time.monotonic()`` reading)."""
    left = (time.monotonic() - started) / max(done, 1) * max(total - done, 0)
    return f"ETA {int(left // 60)}m{int(left % 60):02d}s"
