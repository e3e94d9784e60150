"""What every command shares at the terminal: exit codes, progress, quiet start-up, JSON results.

Progress goes to stderr; a command's result goes to stdout, and where a command prints JSON the
last stdout line is one JSON object, so scripts can read it with ``tail -n 1``. Long steps show
a bar with an ETA where stderr is a terminal, and the same progress as plain lines elsewhere.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.adaptive import AdaptiveSampling

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# The moderation database of commands run without --db: a SQLite file in the working directory.
DEFAULT_DB_URL = "sqlite:///deeptrust.db"

# What C++ libraries (TensorFlow through absl's logging) write straight to file descriptor 2 as
# they start: TF_CPP_MIN_LOG_LEVEL does not reach the lines logged before absl is initialised.
# Child processes write there too, and Beam's root-logger warnings come from them as well.
_NATIVE_CHATTER = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "
    rb"|To enable the following instructions: "
    rb"|WARNING:root:"
)
# Loggers that report library start-up, not the command's work.
_CHATTY_LOGGERS = ("tensorflow", "absl", "h5py")
# A progress message that says how far it is: "features: 3/8 videos".
_COUNT = re.compile(r"\b(\d+)/(\d+)\b")
_quieted = False


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def add_precision_option(parser: argparse.ArgumentParser, default: str) -> None:
    from model.runtime import AUTO, PRECISIONS

    parser.add_argument(
        "--precision",
        choices=(AUTO, *PRECISIONS),
        default=default,
        help="how the backbone computes (a runtime choice; the bundle is unchanged): "
        "mixed_bfloat16 on CPUs with AVX512_BF16/AMX, mixed_float16 on GPUs, auto picks "
        "(default: %(default)s)",
    )


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """``--sampling`` and adaptive sampling's settings (``model.adaptive``)."""
    from model.adaptive import FULL, SAMPLINGS, AdaptiveSampling

    parser.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default=FULL,
        help="full scores every window; adaptive scores --first_windows windows spread over the "
        "video first, and the rest only when one of them is not clearly real "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--first_windows",
        type=int,
        default=AdaptiveSampling.first_windows,
        help="windows of adaptive sampling's first pass (default: %(default)s)",
    )
    parser.add_argument(
        "--clear_share",
        type=float,
        default=AdaptiveSampling.clear_share,
        help="a first pass whose every window scores below this share of the threshold settles "
        "the video as real (default: %(default)s)",
    )


def adaptive_sampling(options: Any) -> AdaptiveSampling | None:
    """The adaptive settings that parsed ``add_sampling_options`` give, or None for full."""
    from model.adaptive import FULL, AdaptiveSampling

    if options.sampling == FULL:
        return None
    return AdaptiveSampling(options.first_windows, options.clear_share)


# --- quiet start-up ------------------------------------------------------------------------


def quiet() -> None:
    """Keep TensorFlow's, absl's and Beam's start-up chatter off stderr, for this process and the
    processes it starts. Call it before those libraries are imported; ``--verbose`` skips it.

    Errors still show: ERROR records of every logger, and every line on stderr that is not a
    native library's INFO, WARNING or ERROR log line.
    """
    global _quieted
    if _quieted:
        return
    _quieted = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not sys.warnoptions:  # -W or PYTHONWARNINGS given: the user chose
        warnings.simplefilter("ignore")
    # Beam warns through the root logger itself (logging.warning) as its modules load; records
    # of named loggers, such as the scan's own, pass on to the root's handlers untouched.
    logging.getLogger().addFilter(lambda record: record.levelno >= logging.ERROR)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Where the host has taken over Python's stderr (a test capturing it), leave its streams be.
    if sys.stderr is sys.__stderr__ and sys.stderr is not None:
        _filter_native_stderr()


def _filter_native_stderr() -> None:
    """Pass file descriptor 2, where native libraries and child processes write, through a
    thread that drops native log chatter; Python's own stderr writes to the terminal directly."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(  # noqa: SIM115 - it is the process's stderr from now on
        terminal, "w", buffering=1, encoding=sys.__stderr__.encoding, errors="backslashreplace"
    )
    thread = threading.Thread(
        target=_pass_through, args=(read_end, terminal), name="stderr-filter", daemon=True
    )
    thread.start()

    def drain() -> None:
        os.dup2(terminal, 2)  # closes this process's end of the pipe: the thread reads to EOF
        thread.join(timeout=1.0)

    atexit.register(drain)


def _pass_through(read_end: int, terminal: int) -> None:
    with open(read_end, "rb") as lines:
        for line in lines:
            if not _NATIVE_CHATTER.match(line):
                os.write(terminal, line)


# --- progress bars -------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """A bar for the progress messages that start with ``prefix``.

    Each such message is one step of ``total``; with no total, the ``k/n`` in the message says
    how far it is.
    """

    prefix: str
    label: str
    total: int | None = None


@contextmanager
def progress_bars(*bars: Bar) -> Iterator[Callable[[str], None]]:
    """A progress callback: bars with an ETA where stderr is a terminal, else ``progress``.

    On a terminal, a message that starts with a bar's prefix moves that bar; any other message
    prints above the bars. Elsewhere every message is a plain line, as ``progress`` prints it.
    """
    if not sys.stderr.isatty():
        yield progress
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    console = Console(file=sys.stderr, highlight=False)
    # Other writes meanwhile print above the bars rather than through them; stdout only where it
    # shares the terminal, so a redirected result stays whole and in its file.
    with Progress(*columns, console=console, redirect_stdout=sys.stdout.isatty()) as shown:
        tasks: dict[Bar, Any] = {}

        def report(message: str) -> None:
            bar = next((b for b in bars if message.startswith(b.prefix)), None)
            if bar is None:
                shown.console.print(message, markup=False, soft_wrap=True)
                return
            counted = _COUNT.search(message) if bar.total is None else None
            if bar not in tasks:
                total = int(counted[2]) if counted else bar.total
                tasks[bar] = shown.add_task(bar.label, total=total)
            if counted:
                shown.update(tasks[bar], completed=int(counted[1]), total=int(counted[2]))
            else:
                shown.advance(tasks[bar])

        yield report
