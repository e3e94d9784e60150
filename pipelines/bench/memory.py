"""Peak memory, the one harness of ``deeptrust bench`` and ``deeptrust bench --load``.

Each case runs in a fresh interpreter (multiprocessing's ``spawn``), so the peak resident set it
reports is its own and not the caller's. Inside it, ``peak_rss_mb`` reads the peak so far,
``reset_peak_rss`` starts it over from the current resident set, and ``children_peak_rss_mb``
gives the largest peak among the processes it has started and waited for.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

_KIB_PER_MIB = 1024.0


def in_fresh_process(work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` in a new interpreter, so that its peak memory is its own.

    ``work`` must be a module-level function: the new interpreter imports it by name.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(work, *args).result()


def reset_peak_rss() -> None:
    """Start this process's peak RSS over from its current RSS (Linux 4.0+; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: ``VmHWM`` where Linux reports it, else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / _KIB_PER_MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _KIB_PER_MIB


def children_peak_rss_mb() -> float:
    """The largest peak RSS in MiB among the child processes this one has waited for."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / _KIB_PER_MIB  # Linux: KiB
