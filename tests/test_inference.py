"""The model handler, called directly on a batch, and the verdict and row it leads to."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.adaptive import WindowScores
from model.bundle import read_manifest
from model.config import DecisionConfig
from model.errors import BundleError
from model.video import VideoInfo
from pipelines.scan.decode import DecodedVideo, VideoClip
from pipelines.scan.inference import WindowModelHandler, scored
from pipelines.scan.listing import VideoRef
from pipelines.scan.writing import result_row


def make_clip(rng, name: str, windows: int, frames: int, size: int) -> VideoClip:
    mask = np.ones((windows, frames), bool)
    mask[-1, frames // 2 :] = False  # the last window is short, as at the end of a video
    video = DecodedVideo(
        ref=VideoRef(f"/videos/{name}.mp4", f"sha256:{name}", 1000),
        info=VideoInfo(fps=25.0, frame_count=100, width=320, height=240),
        starts=np.arange(windows, dtype=float),
        ends=np.arange(windows, dtype=float) + 1.0,
        frames_analyzed=int(mask.sum()),
    )
    pixels = rng.integers(0, 256, (windows, frames, size, size, 3), dtype=np.uint8)
    return VideoClip(video, pixels, mask)


@pytest.mark.e2e
def test_a_batch_of_videos_scores_each_video_as_if_alone(bundle, small_config):
    version = read_manifest(bundle)["model_version"]
    handler = WindowModelHandler(str(bundle), version, max_batch_windows=3)
    loading = handler.load_model()
    detector = loading.result()
    rng = np.random.default_rng(0)
    frames, size = small_config.sampling.frames_per_window, small_config.backbone.input_size
    clips = [make_clip(rng, name, n, frames, size) for name, n in (("a", 2), ("b", 4), ("c", 1))]

    results = handler.run_inference(clips, loading)

    assert [r.example.ref for r in results] == [c.video.ref for c in clips]
    assert {r.model_id for r in results} == {version}
    for result, clip in zip(results, clips, strict=True):
        alone = detector.score_windows(clip.frames, clip.mask)
        np.testing.assert_array_equal(result.inference.indices, np.arange(clip.windows))
        np.testing.assert_allclose(result.inference.scores, alone, rtol=1e-4, atol=1e-5)
        assert result.inference.frames == clip.video.frames_analyzed
    assert handler.get_num_bytes(clips) == sum(c.frames.nbytes for c in clips)


@pytest.mark.e2e
def test_a_bundle_that_changed_after_the_scan_started_is_refused(bundle):
    handler = WindowModelHandler(str(bundle), "0" * 16, max_batch_windows=8)
    loading = handler.load_model()  # returns at once: the bundle loads in the background
    with pytest.raises(BundleError, match="changed during the scan"):
        handler.run_inference([], loading)


@pytest.mark.unit
def test_window_scores_become_a_flagged_row_pending_review():
    video = DecodedVideo(
        ref=VideoRef("s3://b/v.mp4", "etag:x:size:3", 3),
        info=VideoInfo(fps=25.0, frame_count=100, width=320, height=240),
        starts=np.array([0.0, 2.0]),
        ends=np.array([1.0, 3.0]),
        frames_analyzed=16,
    )
    decision = DecisionConfig(threshold=0.5, aggregation="max")
    windows = WindowScores(np.arange(2), np.array([0.2, 0.9]), 16)
    row = result_row(scored(video, windows, decision), "m1")
    assert row["video_uri"] == "s3://b/v.mp4"
    assert row["content_version"] == "etag:x:size:3"
    assert row["model_version"] == "m1"
    assert (row["status"], row["flagged"], row["review_status"]) == ("scored", True, "pending")
    assert row["score"] == pytest.approx(0.9)
    assert [s["score"] for s in json.loads(row["segments"])] == [0.2, 0.9]
    assert row["duration_s"] == 4.0
