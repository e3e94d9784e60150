"""The terminal: a progress bar with an ETA on a terminal, plain lines elsewhere, and native
libraries' start-up chatter kept off stderr unless ``--verbose``."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.component
ROOT = Path(__file__).resolve().parents[1]
STEPS = ["features: 1/3 videos", "a message of its own", "features: 2/3 videos"]
STEPS += ["features: 3/3 videos"]
BARS = f"""
from pipelines.console import Bar, progress_bars
with progress_bars(Bar("features: ", "features")) as report:
    for message in {STEPS!r}:
        report(message)
"""
CHATTER = """
import os, subprocess, sys
from pipelines.console import quiet
quiet()
os.write(2, b"I0000 00:00:1796357124.755820   21217 port.cc:153] oneDNN custom operations\\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called\\n")
os.write(2, b"a native error that matters\\n")
subprocess.run([sys.executable, "-c", "import logging; logging.warning('apitools not found')"])
subprocess.run([sys.executable, "-c",
    "import os; os.write(2, b'E0000 00:00:1.5   7 util.cc:131] oneDNN bool\\\\nchild says\\\\n')"])
print("python says", file=sys.stderr)
"""


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=120, check=True, **kwargs)


def test_progress_is_plain_lines_where_stderr_is_not_a_terminal():
    done = _python(BARS, capture_output=True, text=True)
    assert done.stderr.splitlines() == STEPS


def test_progress_is_a_bar_with_an_eta_on_a_terminal():
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "TERM": "xterm"}
    child = subprocess.Popen(
        [sys.executable, "-c", BARS], stdin=subprocess.DEVNULL, stderr=terminal, env=env
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal: everything is read
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert child.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    assert "features" in text and "3/3" in text and "ETA" in text
    assert "━" in text  # the bar itself
    assert "a message of its own" in text  # other messages print above the bar
    assert "features: 2/3 videos" not in text  # counted messages move the bar instead


def test_quiet_drops_native_log_lines_of_the_process_and_its_children():
    done = _python(CHATTER, capture_output=True, text=True)
    # The filtered lines pass through a thread, so they may come after Python's own.
    assert sorted(done.stderr.splitlines()) == [
        "a native error that matters",
        "child says",
        "python says",
    ]
