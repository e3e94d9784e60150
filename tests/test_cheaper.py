"""Cheaper verdicts: adaptive sampling, the int8 backbone and the LiteRT export for edge devices.

Agreement bounds (int8 against float32, on the test bundle and the held-out corpus). The test
bundle is the hardest case for quantization: its backbone has random weights, whose features vary
little from one face to the next, and its head's normalization divides by that small variation, so
it magnifies the backbone's rounding. Quantizing the weights alone (dynamic range) moves its
scores as much as full int8 did before the average-pool rewrite (0.12 against 0.11, measured), so
the error is the weights', not the calibration's (docs/measure/int8_error.py).
- scores: the largest difference per window stays under ``SCORE_BOUND`` (0.078 measured on this
  bundle, 0.106 before the average-pool rewrite of ``model.avgpool``). An uncalibrated or
  mis-scaled int8 model scatters scores over the whole 0..1 range, which this bound still fails.
- ranking: the video AUC moves by at most ``AUC_BOUND``: two of this 12-video corpus's 36
  real x fake pairs (measured: no change; one pair before the rewrite). The bench holds a
  trained 224-pixel bundle to the issue's 0.01 on its larger corpus (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from scanning import every_row, scan

from model.adaptive import AdaptiveSampling, score_videos
from model.aggregate import video_score
from model.avgpool import DepthwiseAveragePool, border_counts, rewritable, without_average_pools
from model.bundle import CALIBRATION_FILE, check_precision, load_bundle, read_manifest
from model.errors import BundleError
from model.metrics import roc_auc
from model.quantize import convert_backbone
from model.video import WindowSampler

SCORE_BOUND = 0.15
AUC_BOUND = 2 / 36


# --- adaptive sampling (pure) ----------------------------------------------------------------


def constant_scores(per_window: np.ndarray):
    """A model whose window i of a video scores ``per_window[i]``: frames carry their index."""

    def score(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return per_window[frames[:, 0, 0, 0, 0]]

    return score


def video_of(windows: int) -> tuple[np.ndarray, np.ndarray]:
    frames = np.zeros((windows, 2, 1, 1, 3), np.uint8)
    frames[:, 0, 0, 0, 0] = np.arange(windows)
    return frames, np.ones((windows, 2), bool)


@pytest.mark.unit
def test_the_first_pass_spreads_over_the_whole_video():
    adaptive = AdaptiveSampling(first_windows=4)
    assert adaptive.first_pass(16).tolist() == [0, 5, 10, 15]
    assert adaptive.first_pass(3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        AdaptiveSampling(first_windows=0)
    with pytest.raises(ValueError):
        AdaptiveSampling(clear_share=1.5)


@pytest.mark.unit
def test_a_clearly_real_video_rests_on_the_first_pass_alone():
    scores = np.full(16, 0.1)
    (result,) = score_videos(constant_scores(scores), [video_of(16)], 0.5, AdaptiveSampling())
    assert AdaptiveSampling().clear_share == 0.8
    assert result.indices.tolist() == [0, 5, 10, 15]
    assert result.frames == 8


@pytest.mark.unit
def test_a_partly_manipulated_video_gets_every_window_once_the_first_pass_is_unsure():
    scores = np.full(16, 0.1)
    scores[5] = 0.4  # at the line (0.8 x threshold): not clear
    scores[6:9] = 0.95  # the swap, between first-pass windows
    videos = [video_of(16), video_of(16)]
    calls = []

    def counted(frames, mask):
        calls.append(len(frames))
        return constant_scores(scores)(frames, mask)

    results = score_videos(counted, videos, 0.5, AdaptiveSampling())
    assert calls == [8, 24]  # one call for both first passes, one for both remainders
    for result in results:
        assert result.indices.tolist() == list(range(16))
        np.testing.assert_array_equal(result.scores, scores)
    full = score_videos(constant_scores(scores), videos[:1], 0.5)
    np.testing.assert_array_equal(full[0].scores, results[0].scores)


@pytest.mark.unit
def test_only_a_bundle_with_calibration_frames_runs_in_int8():
    manifest = {"model_version": "abc", "files": {"backbone.weights.h5": "x", "head.keras": "y"}}
    check_precision(manifest, "float32")
    with pytest.raises(BundleError, match="calibration"):
        check_precision(manifest, "int8")
    check_precision({**manifest, "files": {**manifest["files"], CALIBRATION_FILE: "z"}}, "int8")


# --- average pools that XNNPACK runs in int8 ------------------------------------------------


def pooled_model(size: int, pool: keras.layers.Layer) -> keras.Model:
    frames = keras.Input((size, size, 3), dtype="uint8", name="frames")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(frames)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = pool(x)
    x = keras.layers.Conv2D(8, 1, activation="relu")(x)
    return keras.Model(frames, keras.layers.GlobalAveragePooling2D()(x))


@pytest.mark.component
@pytest.mark.parametrize("size", [1, 2, 5, 8])
def test_the_average_pool_rewrite_is_exact_in_float(size):
    keras.utils.set_random_seed(size)
    model = pooled_model(size, keras.layers.AveragePooling2D(3, strides=1, padding="same"))
    frames = np.random.default_rng(size).integers(0, 256, (4, size, size, 3), np.uint8)
    twin = without_average_pools(model)
    assert any(isinstance(layer, DepthwiseAveragePool) for layer in twin.layers)
    np.testing.assert_allclose(
        twin.predict(frames, verbose=0), model.predict(frames, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert border_counts(5, 3).tolist() == [2, 3, 3, 3, 2]
    assert border_counts(1, 3).tolist() == [1]


@pytest.mark.component
def test_only_stride_one_same_pools_are_rewritten():
    assert rewritable(keras.layers.AveragePooling2D(3, strides=1, padding="same"))
    assert not rewritable(keras.layers.AveragePooling2D(3, strides=2, padding="same"))
    assert not rewritable(keras.layers.AveragePooling2D(3, strides=1, padding="valid"))
    assert not rewritable(keras.layers.AveragePooling2D(2, strides=1, padding="same"))
    assert not rewritable(keras.layers.MaxPooling2D(3, strides=1, padding="same"))


def litert_ops(model: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()  # applies XNNPACK, which replaces what it runs by DELEGATE nodes
    # The op list has no public accessor; this one lists the graph's nodes after delegation.
    return [op["op_name"] for op in interpreter._get_ops_details()]


@pytest.mark.component
def test_xnnpack_runs_the_whole_int8_graph_of_a_model_with_average_pools():
    keras.utils.set_random_seed(0)
    model = pooled_model(16, keras.layers.AveragePooling2D(3, strides=1, padding="same"))
    calibration = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), np.uint8)
    ops = litert_ops(convert_backbone(model, calibration))
    assert "AVERAGE_POOL_2D" not in ops and "DEPTHWISE_CONV_2D" in ops
    assert ops.count("DELEGATE") == 1  # one delegated graph: nothing falls back between pieces
    float_ops = litert_ops(convert_backbone(model))
    assert "AVERAGE_POOL_2D" in float_ops  # the float export keeps the original operator


# --- int8 and the export (real models) -------------------------------------------------------


@pytest.fixture(scope="module")
def held_out_windows(corpus, small_config):
    """Each held-out video's windows and label (1 = fake)."""
    sampler = WindowSampler(small_config)
    videos = []
    for path in sorted(Path(corpus).rglob("*.mp4")):
        sampled = sampler.sample(str(path))
        videos.append((sampled.frames, sampled.mask, int(path.parent.name == "fake")))
    return videos


@pytest.fixture(scope="module")
def litert_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def scores_of(detector, videos) -> tuple[list[np.ndarray], np.ndarray]:
    windows = [detector.score_windows(frames, mask) for frames, mask, _ in videos]
    decision = detector.config.decision
    return windows, np.array([video_score(w, decision) for w in windows])


@pytest.mark.e2e
def test_int8_scores_agree_with_float_and_the_quantized_model_is_cached(
    bundle, held_out_windows, litert_cache, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(litert_cache))
    labels = np.array([label for *_, label in held_out_windows])
    float32, manifest = load_bundle(str(bundle), precision="float32")
    int8, _ = load_bundle(str(bundle), precision="int8")
    assert int8.lite_backbone is not None
    float_windows, float_videos = scores_of(float32, held_out_windows)
    int8_windows, int8_videos = scores_of(int8, held_out_windows)
    largest = max(np.abs(a - b).max() for a, b in zip(float_windows, int8_windows, strict=True))
    assert 0 < largest < SCORE_BOUND  # different arithmetic, the same verdicts
    assert abs(roc_auc(labels, float_videos) - roc_auc(labels, int8_videos)) <= AUC_BOUND

    cached = litert_cache / "deeptrust" / "litert" / f"{manifest['model_version']}-int8.tflite"
    made = cached.stat().st_mtime_ns
    load_bundle(str(bundle), precision="int8")
    assert cached.stat().st_mtime_ns == made  # taken from the cache
    cached.write_bytes(b"damaged")
    again, _ = load_bundle(str(bundle), precision="int8")
    assert cached.stat().st_size > 1000  # made again, not loaded damaged
    np.testing.assert_allclose(scores_of(again, held_out_windows)[1], int8_videos, atol=1e-6)


EDGE_SCRIPT = """
import json, sys
import numpy as np
from model.edge import EdgeDetector
edge = EdgeDetector(sys.argv[1])
data = np.load(sys.argv[2])
scores = [edge.score_windows(data[f"f{i}"], data[f"m{i}"]).tolist() for i in range(int(data["n"]))]
verdict = edge.verdict(data["f0"], data["m0"])
print(json.dumps({"scores": scores, "verdict": verdict,
                  "tensorflow": any(m.split(".")[0] == "tensorflow" for m in sys.modules)}))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_an_export_runs_in_litert_alone_and_matches_the_bundle(
    bundle, held_out_windows, tmp_path, int8
):
    out = tmp_path / "edge"
    command = [sys.executable, "-m", "pipelines.cli", "export", str(bundle), "--out", str(out)]
    done = subprocess.run(
        command + (["--int8"] if int8 else []), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["backbone_precision"] == ("int8" if int8 else "float32")
    assert summary["check"]["max_score_difference"] < SCORE_BOUND
    assert sorted(p.name for p in out.iterdir()) == [
        "backbone.tflite",
        "export.json",
        "head.tflite",
    ]

    arrays = {"n": len(held_out_windows)}
    for i, (frames, mask, _) in enumerate(held_out_windows):
        arrays |= {f"f{i}": frames, f"m{i}": mask}
    np.savez(tmp_path / "windows.npz", **arrays)
    edge = subprocess.run(
        [sys.executable, "-c", EDGE_SCRIPT, str(out), str(tmp_path / "windows.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert edge.returncode == 0, edge.stderr
    result = json.loads(edge.stdout.strip().splitlines()[-1])
    assert result["tensorflow"] is False
    float32, _ = load_bundle(str(bundle), precision="float32")
    expected, _ = scores_of(float32, held_out_windows)
    for want, got in zip(expected, result["scores"], strict=True):
        np.testing.assert_allclose(got, want, atol=SCORE_BOUND)
        if not int8:
            np.testing.assert_allclose(got, want, atol=1e-4)  # the same float arithmetic
    decision = float32.config.decision
    assert result["verdict"]["threshold"] == decision.threshold
    assert result["verdict"]["score"] == pytest.approx(
        video_score(result["scores"][0], decision), abs=1e-6
    )


@pytest.mark.e2e
def test_an_int8_adaptive_scan_records_its_precision_and_the_windows_it_used(
    bundle, corpus, tmp_path, litert_cache, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(litert_cache))
    version = read_manifest(bundle)["model_version"]
    db_full = f"sqlite:///{tmp_path / 'full.db'}"
    db_fast = f"sqlite:///{tmp_path / 'fast.db'}"
    scan(corpus, bundle, db_full)
    summary = scan(
        corpus,
        bundle,
        db_fast,
        "--precision",
        "int8",
        "--sampling",
        "adaptive",
        "--first_windows",
        "2",
    )
    assert summary["model_version"] == f"{version}-int8"
    full = {r["video_uri"]: r for r in every_row(db_full, "results")}
    fast = {r["video_uri"]: r for r in every_row(db_fast, "results")}
    assert full.keys() == fast.keys() and len(full) == 12
    assert {r["model_version"] for r in fast.values()} == {f"{version}-int8"}
    for uri, row in fast.items():
        every = len(json.loads(full[uri]["segments"]))
        # The first pass's windows alone, or every window the full scan scored.
        assert len(json.loads(row["segments"])) in (min(2, every), every)
        assert row["frames_analyzed"] <= full[uri]["frames_analyzed"]
