"""Decoding real encoded clips into face-cropped windows spread over the whole video."""

from __future__ import annotations

import numpy as np
import pytest
from media import make_clip, rotate_clip, run_ffmpeg

from model.config import DetectorConfig, FaceCropConfig, SamplingConfig
from model.errors import VideoError
from model.video import WindowSampler

pytestmark = pytest.mark.component

DEFAULT = DetectorConfig()


@pytest.fixture(scope="module")
def sampler():
    return WindowSampler(DEFAULT)


@pytest.fixture(scope="module")
def full_hd_with_audio(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "full_hd.mp4"
    return make_clip(path, width=1920, height=1080, seconds=26, audio=True)


def test_full_hd_clip_with_audio(sampler, full_hd_with_audio):
    info, windows = sampler.open(str(full_hd_with_audio))
    windows = list(windows)
    assert (info.width, info.height) == (1920, 1080)
    assert info.frame_count >= 750
    assert len(windows) == DEFAULT.sampling.max_windows
    for window in windows:
        assert window.frames.shape == (20, 224, 224, 3)
        assert window.frames.dtype == np.uint8
        assert window.mask.all()
    assert windows[-1].end_s == pytest.approx(info.duration_s, abs=0.1)
    # The clip shows a real face: MTCNN finds it in (nearly) every window.
    assert sum(w.face_source == "mtcnn" for w in windows) >= len(windows) - 1


def test_portrait_phone_video_is_upright(sampler, full_hd_with_audio, tmp_path):
    small = make_clip(tmp_path / "landscape.mp4", width=640, height=360, seconds=4)
    portrait = rotate_clip(small, tmp_path / "portrait.mp4", 90)
    info, windows = sampler.open(str(portrait))
    assert (info.width, info.height) == (360, 640)
    assert len(list(windows)) >= 1


def test_minute_long_video_windows_cover_its_length(sampler, tmp_path):
    clip = make_clip(tmp_path / "long.mp4", width=176, height=144, seconds=75, fps=30)
    info, windows = sampler.open(str(clip))
    windows = list(windows)
    assert info.duration_s == pytest.approx(75, abs=0.1)
    assert len(windows) == DEFAULT.sampling.max_windows
    assert windows[0].start_s == 0.0
    assert windows[-1].end_s == pytest.approx(75, abs=0.1)
    starts = [w.start_s for w in windows]
    assert max(np.diff(starts)) < 75 / (len(windows) - 1) + 0.1  # no uncovered stretch


def test_short_clip_gets_a_padded_window(tmp_path):
    config = DetectorConfig(sampling=SamplingConfig(frames_per_window=20, sample_fps=15.0))
    clip = make_clip(tmp_path / "short.mp4", width=176, height=144, seconds=0.5, fps=30)
    info, windows = WindowSampler(config).open(str(clip))
    (window,) = list(windows)
    assert window.mask.sum() == len(range(0, info.frame_count, 2))
    assert not window.mask[-1]
    assert window.frames[~window.mask].max() == 0


def test_video_without_a_face_falls_back_to_the_centre(sampler, tmp_path):
    clip = tmp_path / "pattern.mp4"
    run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        str(clip),
    )
    _, windows = sampler.open(str(clip))
    assert {w.face_source for w in windows} == {"center"}


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "empty_file"), (b"this is a text file, not a video\n" * 10, "unreadable")],
)
def test_unreadable_inputs_raise_a_coded_error(sampler, tmp_path, content, code):
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as caught:
        sampler.open(str(path))
    assert caught.value.code == code


def test_missing_file(sampler, tmp_path):
    with pytest.raises(VideoError) as caught:
        sampler.open(str(tmp_path / "gone.mp4"))
    assert caught.value.code == "not_found"


# A cheap hostile file: 64x64 frames at 1000 fps with a single keyframe, so every seek decodes
# from the start again. Before seeks were budgeted it took about 110 s to sample here; at 25 fps
# the same frames took seconds.
SINGLE_KEYFRAME_FRAMES = 20_000
LOW_DECODE_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def thousand_fps_one_keyframe(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "thousand_fps.mp4"
    run_ffmpeg(
        *("-f", "lavfi", "-i", "testsrc=size=64x64:rate=1000"),
        *("-frames:v", str(SINGLE_KEYFRAME_FRAMES), "-g", str(SINGLE_KEYFRAME_FRAMES)),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)),
    )
    return path


def test_a_thousand_fps_file_with_one_keyframe_samples_well_within_a_low_time_limit(
    thousand_fps_one_keyframe,
):
    from pipelines.scan.isolation import DecoderProcess

    config = DetectorConfig(face=FaceCropConfig(enabled=False))
    decoder = DecoderProcess(config, timeout_s=LOW_DECODE_TIMEOUT_S)
    try:
        sampled = decoder.sample(str(thousand_fps_one_keyframe))  # decode_timeout raises
    finally:
        decoder.close()
    assert (sampled.info.fps, sampled.info.frame_count) == (1000.0, SINGLE_KEYFRAME_FRAMES)
    assert sampled.mask.shape == (config.sampling.max_windows, config.sampling.frames_per_window)
    assert sampled.mask.all()
    assert sampled.ends[-1] == pytest.approx(SINGLE_KEYFRAME_FRAMES / 1000.0, abs=0.01)


def test_frames_sampled_by_seeking_or_by_decoding_forward_are_the_same(
    thousand_fps_one_keyframe, monkeypatch
):
    import model.video

    config = DetectorConfig(face=FaceCropConfig(enabled=False))
    budgeted = WindowSampler(config).sample(str(thousand_fps_one_keyframe))
    monkeypatch.setattr(model.video, "SEEK_MIN_GAP_FRAMES", 10**9)  # never seek
    forward = WindowSampler(config).sample(str(thousand_fps_one_keyframe))
    np.testing.assert_array_equal(budgeted.frames, forward.frames)
    np.testing.assert_allclose(budgeted.starts, forward.starts)


@pytest.mark.parametrize(
    ("seek_costs", "stopped"),
    [
        ([0.1, 0.1, 0.1, 0.1], False),  # a keyframe near each target: seeking pays
        ([1.0, 2.0], False),  # too few seeks to judge
        ([1.0, 2.0, 3.0], True),  # each seek decodes from the start again
        ([0.1, 0.1, 0.1, 6.0], True),  # one ruinous seek outweighs the cheap ones
    ],
    ids=["cheap", "unjudged", "growing", "ruinous"],
)
def test_seeking_stops_once_it_costs_more_than_decoding_forward(seek_costs, stopped):
    from model.video import SEEK_MIN_GAP_FRAMES, SeekBudget

    budget = SeekBudget()
    budget.decoded(frames=100, seconds=1.0)  # 10 ms a frame
    for cost in seek_costs:
        assert budget.seek_over(SEEK_MIN_GAP_FRAMES)
        budget.sought(skipped=67, seconds=cost)  # decoding 67 frames forward: 0.67 s
    assert budget.stopped is stopped
    assert budget.seek_over(SEEK_MIN_GAP_FRAMES) is not stopped
    assert not budget.seek_over(SEEK_MIN_GAP_FRAMES - 1)  # short gaps are always decoded
