"""`deeptrust demo`: the whole job offline, ending in a table of flagged videos and a summary."""

from __future__ import annotations

import json

import pytest

from pipelines import cli

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
