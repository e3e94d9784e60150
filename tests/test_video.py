"""Decoding real encoded clips into face-cropped windows spread over the whole video."""

from __future__ import annotations

import numpy as np
import pytest
from media import make_clip, rotate_clip, run_ffmpeg

from model.config import DetectorConfig, SamplingConfig
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
