"""The `deeptrust` command line: help, train -> evaluate -> score, exit codes and JSON output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from media import make_clip

from pipelines.cli import main


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.component
def test_help_lists_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("synth", "train", "evaluate", "score"):
        assert command in out


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    """A corpus made with another seed than the one the bundle was trained on."""
    from model.synth import write_corpus

    out = tmp_path_factory.mktemp("holdout")
    write_corpus(out, 12, seed=2)
    return out


@pytest.mark.e2e
def test_evaluate_json_on_a_corpus_of_another_seed(bundle, holdout, tmp_path, capsys):
    code = main(
        [
            "evaluate",
            str(holdout),
            "--model",
            str(bundle),
            "--json",
            "--report",
            str(tmp_path / "report"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    result = last_json(capsys.readouterr().out)
    for key in ("n", "auc", "accuracy", "eer", "log_loss", "ap"):
        assert key in result
    assert result["n"] == 12
    assert "random" in result["backbone_weights"]
    # Even the small test model separates the synthetic swaps well on unseen videos.
    assert result["auc"] >= 0.8
    assert (tmp_path / "report" / "roc.png").stat().st_size > 1000
    assert (tmp_path / "report" / "scores.png").stat().st_size > 1000


@pytest.mark.e2e
def test_score_a_full_hd_clip_with_audio(bundle, tmp_path, capsys):
    clip = make_clip(tmp_path / "upload.mp4", width=1920, height=1080, seconds=26, audio=True)
    assert main(["score", str(clip), "--model", str(bundle)]) == 0
    verdict = last_json(capsys.readouterr().out)
    assert verdict["status"] == "scored"
    assert 0.0 <= verdict["score"] <= 1.0
    assert verdict["flagged"] == (verdict["score"] >= verdict["threshold"])
    assert "random" in verdict["backbone_weights"]
    assert verdict["model_version"]
    assert (verdict["width"], verdict["height"]) == (1920, 1080)
    segments = verdict["segments"]
    assert len(segments) == 4  # the test bundle's max_windows
    assert segments[0]["start_s"] == 0.0
    assert segments[-1]["end_s"] == pytest.approx(26, abs=0.2)
    assert verdict["frames_analyzed"] == sum(8 for _ in segments)


@pytest.mark.e2e
def test_score_reports_an_undecodable_upload(bundle, tmp_path, capsys):
    fake_video = tmp_path / "notes.mp4"
    fake_video.write_text("not a video\n")
    assert main(["score", str(fake_video), "--model", str(bundle)]) == 1
    verdict = last_json(capsys.readouterr().out)
    assert verdict["status"] == "error"
    assert verdict["error_reason"] == "unreadable"


@pytest.mark.e2e
def test_tampered_bundle_exits_non_zero(bundle, tmp_path, capsys):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "head.keras").write_bytes(b"replaced")
    clip = tmp_path / "x.mp4"
    clip.write_bytes(b"\0")
    assert main(["score", str(clip), "--model", str(copy)]) == 1
    assert "refused model bundle" in capsys.readouterr().err


@pytest.mark.component
def test_missing_data_is_a_usage_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere"), "--model", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
