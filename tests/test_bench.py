"""`deeptrust bench`: its JSON contract, ratios taken from what it measured, and its pieces.

Timings depend on the machine and its load, so no test checks a speed; each checks that the
numbers are measured, consistent with each other, and counted over the frames they claim.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from model.bundle import detector_config, load_bundle, read_manifest
from model.frames import plan_windows
from model.runtime import PRECISIONS
from pipelines.bench.cheaper import auc_of, flags_changed
from pipelines.bench.options import ONEDNN_ENV, chunk_rows, onednn_rows, precision_rows
from pipelines.bench.prototype import PROTOTYPE_STEP, first_frames
from pipelines.bench.suite import format_report
from pipelines.bench.throughput import (
    Rate,
    Scanned,
    Workspace,
    folder_labels,
    list_videos,
    loop_clip,
    scan_shape,
)

CONTRACT = (
    "decode_fps",
    "model_fps",
    "prototype_fps",
    "scan_fps",
    "peak_rss_short_mb",
    "peak_rss_long_mb",
)


@pytest.fixture(scope="module")
def bench_result(bundle):
    """One tiny bench run through the CLI: 2 synthetic 3-second videos, the small bundle."""
    argv = ["bench", "--json", "--model", str(bundle), "--videos", "2", "--video-seconds", "3"]
    argv += ["--short-seconds", "2", "--long-seconds", "20"]
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.e2e
def test_json_holds_every_measurement_of_the_contract(bench_result):
    for key in CONTRACT:
        assert isinstance(bench_result[key], float) and bench_result[key] > 0, key
    assert bench_result["precision"] in PRECISIONS
    assert bench_result["prototype_precision"] == "float32"
    assert bench_result["backbone_weights"].startswith("random")
    assert bench_result["videos"] == 2


@pytest.mark.e2e
def test_ratios_are_computed_from_the_measured_rates(bench_result):
    r = bench_result
    # Ratios are rounded to 3 decimals; this tiny run's start-up makes scan/model small enough
    # (about 0.03) for that rounding alone to exceed 1 %.
    close = {"rel": 0.01, "abs": 0.0005}
    assert r["scan_vs_model"] == pytest.approx(r["scan_fps"] / r["model_fps"], **close)
    assert r["scan_vs_prototype"] == pytest.approx(r["scan_fps"] / r["prototype_fps"], **close)
    assert r["decode_vs_model"] == pytest.approx(r["decode_fps"] / r["model_fps"], **close)
    assert r["rss_long_vs_short"] == pytest.approx(
        r["peak_rss_long_mb"] / r["peak_rss_short_mb"], rel=0.01
    )
    assert r["scan_fps"] == pytest.approx(r["scan_frames"] / r["scan_seconds"], rel=0.02)
    assert r["scan_videos_per_min"] == pytest.approx(60 * r["videos"] / r["scan_seconds"], rel=0.02)


@pytest.mark.e2e
def test_the_scan_counts_every_window_of_the_whole_video(bench_result, bundle):
    """3-second videos at 25 fps: every window the plan spreads over them, not the first one."""
    config = detector_config(read_manifest(bundle))
    planned = sum(len(p.indices) for p in plan_windows(75, 25.0, config.sampling))
    assert planned > config.sampling.frames_per_window, "more than the prototype's one window"
    assert bench_result["scan_frames"] == 2 * planned
    assert bench_result["frames_per_video"] == planned


@pytest.mark.e2e
def test_cheaper_verdicts_are_measured_beside_todays_scan(bench_result):
    r = bench_result
    assert r["videos_per_min_full"] == r["scan_videos_per_min"]  # the full scan is today's scan
    for name in ("full", "adaptive", "int8", "fast"):
        assert r[f"videos_per_min_{name}"] > 0, name
        # one real and one fake video: the AUC is 0 or 1, and partial fakes may be absent
        assert r[f"auc_{name}"] in (0.0, 1.0), name
    # adaptive sampling never rests a verdict on more windows than full sampling
    assert r["frames_per_verdict_adaptive"] <= r["frames_per_verdict_full"]
    assert r["frames_per_verdict_fast"] <= r["frames_per_verdict_int8"]
    assert r["frames_per_verdict_int8"] == r["frames_per_verdict_full"]
    # the ratio comes from the unrounded rates, the JSON's rates are rounded to 0.01: they agree
    # to within that rounding, not to the ratio's last digit
    ratio = r["videos_per_min_fast"] / r["videos_per_min_full"]
    assert r["fast_vs_full"] == pytest.approx(ratio, rel=0.01)
    assert 0 <= r["max_score_difference_int8"] < 0.15  # the bound of tests/test_cheaper.py
    assert r["int8_quantize_s"] > 0
    assert all(0 <= r[f"flags_changed_{n}"] <= 2 for n in ("adaptive", "int8", "fast"))


@pytest.mark.e2e
def test_the_text_report_shows_the_numbers(bench_result):
    text = format_report(bench_result)
    assert f"{bench_result['scan_fps']:8.2f} frames/s" in text
    assert f"scan/model {bench_result['scan_vs_model']}" in text


@pytest.mark.component
def test_loop_clip_plays_forth_and_back_to_the_length_asked(corpus, tmp_path):
    source = list_videos(corpus)[0]
    out = loop_clip(source, tmp_path / "long.mp4", seconds=12.0)
    capture = cv2.VideoCapture(str(out))
    fps, count = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
    capture.release()
    assert count == round(12.0 * fps)


@pytest.mark.component
def test_prototype_reads_every_second_frame_from_the_start(corpus):
    path = list_videos(corpus)[0]
    frames = first_frames(path, 5)
    capture = cv2.VideoCapture(path)
    decoded = []
    for _ in range(5 * PROTOTYPE_STEP):
        decoded.append(cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(frames) == 5
    for got, want in zip(frames, decoded[::PROTOTYPE_STEP], strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.unit
def test_scan_shape_follows_the_scan_options():
    assert scan_shape(["--direct_num_workers=2", "--min_batch_windows=8"]) == (8, 2)
    assert scan_shape([]) == (16, 1)


@pytest.mark.e2e
def test_option_rows_are_ratios_to_their_baseline(bundle, tmp_path):
    detector, manifest = load_bundle(str(bundle))
    space = Workspace(tmp_path, str(tmp_path), [], str(bundle), detector, manifest)
    size, length = detector.config.backbone.input_size, detector.config.sampling.frames_per_window
    frames = np.zeros((2, length, size, size, 3), np.uint8)
    mask = np.ones((2, length), bool)
    rows = precision_rows(space, frames, mask, 2) + chunk_rows(space, frames, mask, 2)
    assert {r["value"] for r in rows if r["option"] == "precision"} == set(PRECISIONS)
    assert {r["value"] for r in rows if r["option"] == "chunk"} == {"16 rows", "32 rows", "64 rows"}
    for r in rows:
        assert r["fps"] > 0
        if r["value"] in ("float32", "32 rows"):
            assert r["ratio"] == 1.0


@pytest.mark.e2e
def test_onednn_rows_run_each_setting_in_a_process_of_its_own(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv(ONEDNN_ENV, "left alone")
    detector, manifest = load_bundle(str(bundle))
    space = Workspace(tmp_path, str(tmp_path), [], str(bundle), detector, manifest)
    size, length = detector.config.backbone.input_size, detector.config.sampling.frames_per_window
    frames = np.zeros((1, length, size, size, 3), np.uint8)
    rows = onednn_rows(space, frames, np.ones((1, length), bool))
    assert [r["value"] for r in rows] == [f"{ONEDNN_ENV}=0", f"{ONEDNN_ENV}=1"]
    assert all(r["fps"] > 0 and r["baseline"] == f"{ONEDNN_ENV}=0" for r in rows)
    assert rows[0]["ratio"] == 1.0
    assert os.environ[ONEDNN_ENV] == "left alone"


@pytest.mark.unit
def test_cheaper_scans_are_compared_video_by_video_on_labels_keyed_as_the_scan_keys_them(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    labels = folder_labels(["corpus/real/a.mp4", "corpus/fake/b.mp4", "corpus/c.mp4"])
    real, fake = str(tmp_path / "corpus/real/a.mp4"), str(tmp_path / "corpus/fake/b.mp4")
    assert labels == {real: (0, False), fake: (1, False)}  # absolute, as the scan's rows

    def scanned(scores: dict[str, float]) -> Scanned:
        return Scanned(Rate(1, 1.0), {"scored": len(scores)}, scores)

    full = scanned({real: 0.2, fake: 0.9})
    assert auc_of(full, labels, partial_only=False) == 1.0
    assert auc_of(full, labels, partial_only=True) is None  # no partly manipulated fake
    assert flags_changed(full, full, 0.5) == 0
    assert flags_changed(scanned({real: 0.6, fake: 0.4}), full, 0.5) == 2
    assert flags_changed(scanned({real: 0.49, fake: 0.5}), full, 0.5) == 0
