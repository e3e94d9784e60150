"""`deeptrust demo`: the whole job offline, ending in a table of flagged videos and a summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def test_demo_trains_scans_and_prints_the_flagged_videos(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--videos", "8", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert (summary["status"], summary["videos_seen"], summary["skipped"]) == ("succeeded", 8, 0)
    assert summary["scored"] + summary["errors"] == 8
    assert summary["backbone_weights"].startswith("random (untrained backbone")
    heading = next(i for i, line in enumerate(lines) if line.startswith("flagged videos"))
    assert "random (untrained backbone" in lines[heading]
    table = lines[heading + 2 : -1]
    if summary["flagged"]:
        assert len(table) == summary["flagged"]
        assert all(line.split()[-1].endswith(".mp4") for line in table)
    else:
        assert table == ["(no video was flagged)"]
    assert (tmp_path / "deeptrust.db").is_file()
    assert len(list((tmp_path / "corpus").rglob("*.mp4"))) == 8


# Start-up lines of TensorFlow and absl (C++ and Python) and of Beam's root-logger warnings.
CHATTER = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl|WARNING:(root|absl|tensorflow):"
    r"|To enable the following instructions)"
)


def _deeptrust(*argv: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, with stderr captured (so not a terminal)."""
    # Without the test session's own TF_CPP_MIN_LOG_LEVEL: a user's shell does not set it, and
    # on CPUs whose TensorFlow notices are only INFO lines, it hides all the chatter.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )


def test_the_demo_shows_its_progress_and_no_library_chatter(tmp_path):
    stderr = _deeptrust("demo", "--out", str(tmp_path), "--videos", "4").stderr.splitlines()
    assert [line for line in stderr if CHATTER.match(line)] == []
    assert f"demo: writing 4 synthetic videos to {tmp_path / 'corpus'}" in stderr
    assert "features: 4/4 videos" in stderr
    assert any(line.startswith("train: epoch 1/") and "ETA" in line for line in stderr)
    assert any(line.startswith("demo: scanning ") for line in stderr)


def test_verbose_lets_the_library_chatter_through(tmp_path):
    """``synth`` loads TensorFlow (MTCNN finds the faces): the cheapest command that does."""
    quiet = _deeptrust("synth", str(tmp_path / "quiet"), "--videos", "1").stderr.splitlines()
    loud = _deeptrust("--verbose", "synth", str(tmp_path / "loud"), "--videos", "1")
    loud_lines = loud.stderr.splitlines()
    assert [line for line in quiet if CHATTER.match(line)] == []
    assert [line for line in loud_lines if CHATTER.match(line)] != []
    for lines in (quiet, loud_lines):
        assert any(line.startswith("wrote real/0000-carphone.mp4 (") for line in lines)
