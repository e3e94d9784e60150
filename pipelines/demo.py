"""`deeptrust demo`: the main job end to end on embedded defaults, offline and without services.

It writes a small synthetic corpus, trains a small detector on it, scans the corpus into SQLite
with the local runner, and prints the flagged videos. The backbone is untrained (random weights,
labelled as such), so the verdicts demonstrate the job, not real deepfake detection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.backbone import RANDOM
from model.config import BackboneConfig, DetectorConfig, FaceCropConfig, SamplingConfig
from model.synth import write_corpus
from model.train import TrainOptions, train
from pipelines.console import Bar
from pipelines.scan.run import run as run_scan
from pipelines.store import database

# Smaller than production (224 px, 20 frames) so the demo trains and scans in minutes on a CPU.
DEMO_CONFIG = DetectorConfig(
    sampling=SamplingConfig(frames_per_window=12, sample_fps=8.0, max_windows=4),
    face=FaceCropConfig(enabled=True),
    backbone=BackboneConfig(input_size=128),
)
DEMO_TRAINING = TrainOptions(epochs=30, val_fraction=0.25)


def demo_bars(videos: int) -> tuple[Bar, ...]:
    """The demo's long steps: writing the corpus, extracting features, training epochs."""
    return (
        Bar("wrote ", "synthetic videos", videos),
        Bar("features: ", "features"),
        Bar("train: epoch ", "epochs", DEMO_TRAINING.epochs),
    )


def flagged_table(rows: list[dict[str, Any]], root: Path) -> str:
    """The flagged videos as a text table, with each one's most suspicious window."""
    lines = [f"{'score':>7}  {'threshold':>9}  {'window (s)':>12}  video"]
    for row in rows:
        top = max(json.loads(row["segments"]), key=lambda s: s["score"])
        window = f"{top['start_s']:.1f}-{top['end_s']:.1f}"
        video = Path(row["video_uri"])
        shown = video.relative_to(root) if video.is_relative_to(root) else video
        lines.append(f"{row['score']:7.3f}  {row['threshold']:9.3f}  {window:>12}  {shown}")
    if not rows:
        lines.append("(no video was flagged)")
    return "\n".join(lines)


def run_demo(
    out: str | Path, videos: int, seed: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Synthesize, train, scan; prints the flagged table and returns the scan's summary."""
    root = Path(out).resolve()
    corpus, bundle = root / "corpus", root / "bundle"
    db_url = f"sqlite:///{root / 'deeptrust.db'}"
    progress(f"demo: writing {videos} synthetic videos to {corpus}")
    write_corpus(corpus, videos, seed=seed, progress=progress)
    progress(f"demo: training a small detector (random backbone) into {bundle}")
    train(
        str(corpus),
        bundle,
        weights=RANDOM,
        config=DEMO_CONFIG,
        options=replace(DEMO_TRAINING, seed=seed),
        cache_dir=root / "features",
        progress=progress,
    )
    progress(f"demo: scanning {corpus} into {db_url}")
    summary = run_scan(["--input", str(corpus), "--model", str(bundle), "--db", db_url])
    engine = database.connect(db_url)
    try:
        rows = database.flagged_results(engine, summary["run_id"])
    finally:
        engine.dispose()
    print(f"flagged videos (backbone: {summary['backbone_weights']}):")
    print(flagged_table(rows, corpus), flush=True)
    return summary
