"""Moderators' decisions train the next model, and evaluate shows it beside the one it replaces."""

from __future__ import annotations

import json
import shutil

import pytest
from apache_beam.io.filesystem import FileMetadata

from model.bundle import MANIFEST
from pipelines import cli
from pipelines.moderation.review import Review, open_database, record_review
from pipelines.scan import writing
from pipelines.scan.listing import content_version
from tests.rows import finished_run, verdict

pytestmark = pytest.mark.e2e

SMALL = ["--frames-per-window", "8", "--sample-fps", "8", "--max-windows", "4"]


def decided(db_url: str, decisions: dict) -> None:
    """Flagged rows for each path's current bytes, then each path's decision."""
    rows = [
        writing.scored_row(
            str(path),
            content_version(FileMetadata(str(path), path.stat().st_size)),
            "m1",
            verdict(0.9, True),
        )
        for path in decisions
    ]
    finished_run(db_url, "run-1", "m1", rows)
    engine = open_database(db_url)
    for path, decision in decisions.items():
        record_review(engine, Review(str(path), decision, "mod", None))
    engine.dispose()


def test_decisions_train_a_bundle_that_counts_them_and_evaluate_shows_both(
    corpus, training_corpus, bundle, tmp_path, capsys
):
    fakes = sorted((training_corpus / "fake").glob("*.mp4"))
    reals = sorted((training_corpus / "real").glob("*.mp4"))
    changed, gone = tmp_path / "changed.mp4", tmp_path / "gone.mp4"
    shutil.copy(fakes[2], changed)
    shutil.copy(reals[2], gone)
    db_url = f"sqlite:///{tmp_path / 'scan.db'}"
    decided(
        db_url,
        {
            fakes[0]: "confirmed",
            fakes[1]: "confirmed",
            reals[0]: "dismissed",
            reals[1]: "dismissed",
            changed: "confirmed",
            gone: "dismissed",
        },
    )
    with changed.open("ab") as handle:  # the bytes decided on are replaced
        handle.write(b"\0")
    gone.unlink()
    out = tmp_path / "new"

    argv = ["train", str(corpus), "--out", str(out), "--backbone-weights", "random"]
    extra = ["--epochs", "3", "--image-size", "96", "--cache-dir", str(tmp_path / "cache")]
    assert cli.main([*argv, *extra, *SMALL, "--from-reviews", db_url]) == 0

    captured = capsys.readouterr()
    result = json.loads(captured.out.splitlines()[-1])
    assert result["from_reviews"] == {"fake": 2, "real": 2}
    assert result["reviews_left_out"] == 2
    assert f"{changed} (sha256:" in captured.err
    assert "its bytes changed since the review" in captured.err
    assert f"{gone} (sha256:" in captured.err and "it no longer exists" in captured.err
    training = json.loads((out / MANIFEST).read_text())["training"]
    assert training["from_reviews"] == {"fake": 2, "real": 2}
    assert training["videos"] == {"real": 6 + 2, "fake": 6 + 2}

    evaluate = ["evaluate", str(corpus), "--model", str(out), "--baseline", str(bundle)]
    assert cli.main([*evaluate, "--json", "--cache-dir", str(tmp_path / "cache")]) == 0
    both = json.loads(capsys.readouterr().out.splitlines()[-1])
    new_version = json.loads((out / MANIFEST).read_text())["model_version"]
    old_version = json.loads((bundle / MANIFEST).read_text())["model_version"]
    assert both["model_version"] == new_version
    assert both["baseline"]["model_version"] == old_version
    for key in ("n", "auc", "accuracy", "eer", "log_loss", "ap"):
        assert key in both and key in both["baseline"]
    assert both["n"] == both["baseline"]["n"] == 12

    assert cli.main([*evaluate, "--cache-dir", str(tmp_path / "cache")]) == 0
    table = capsys.readouterr().out
    assert new_version[:16] in table and old_version[:16] in table
    auc_line = next(line for line in table.splitlines() if line.strip().startswith("auc:"))
    assert f"{both['auc']:.4f}" in auc_line and f"{both['baseline']['auc']:.4f}" in auc_line
