"""Bad inputs a moderation worker meets, made with a real encoder, and the row each must get.

Every file is real: truncated, mislabelled, audio-only, tiny, 8K, hour-long, variable-frame-rate
and rotated files come out of FFmpeg (the binary in the imageio-ffmpeg wheel) or are cut from
its output. Only ``crash.mp4`` and ``hang.mp4`` need the test-only decoder child
(``faulty_decoder``) to misbehave.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from media import carphone_path, make_clip, rotate_clip, run_ffmpeg

SCORED = "scored"
# Bigger than any real file here, smaller than the sparse ``huge.mp4``.
MAX_VIDEO_BYTES = 64 << 20
# VFR_SPLIT frames at VFR_FAST fps, then the rest at VFR_SLOW fps.
VFR_FAST, VFR_SLOW, VFR_SPLIT, VFR_SECONDS = 30, 5, 60, 4
VFR_FRAMES = VFR_SPLIT + (VFR_SECONDS - VFR_SPLIT // VFR_FAST) * VFR_SLOW
# Names that must reach the table exactly as they are on disk.
ODD_NAMES = ("with space.mp4", "ünïcødé 视频.mp4", "x'); DROP TABLE moderation_results;--.mp4")

# File name -> the row's status for scored videos, else its error_reason.
EXPECTED = {
    "good_a.mp4": SCORED,
    "good_b.mp4": SCORED,
    "empty.mp4": "empty_file",
    "truncated.mp4": "truncated",
    "notes.mp4": "unreadable",
    "photo.mp4": "not_a_video",
    "audio_only.mp4": "no_video_stream",
    "corrupt.mp4": "no_frames",
    "huge.mp4": "too_large",
    "crash.mp4": "decoder_crashed",
    "hang.mp4": "decode_timeout",
    "one_frame.mp4": SCORED,
    "tiny_16x16.mp4": SCORED,
    "uhd_8k.mp4": SCORED,
    "hour_long_64x48.mp4": SCORED,
    "vfr.mp4": SCORED,
    "portrait.mp4": SCORED,
    "no_face.mp4": SCORED,
    **dict.fromkeys(ODD_NAMES, SCORED),
}


def vfr_time(index: int) -> float:
    """When frame ``index`` of ``vfr.mp4`` is shown, in seconds."""
    if index < VFR_SPLIT:
        return index / VFR_FAST
    return VFR_SPLIT / VFR_FAST + (index - VFR_SPLIT) / VFR_SLOW


def _encode(path: Path, *args: str) -> Path:
    run_ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


def make_vfr(path: Path) -> Path:
    """Frames at 30 fps for 2 s, then at 5 fps for 2 s, with their real timestamps."""
    pts = f"if(lt(N,{VFR_SPLIT}),N/{VFR_FAST},{VFR_SPLIT / VFR_FAST}+(N-{VFR_SPLIT})/{VFR_SLOW})"
    return _encode(
        path,
        *("-stream_loop", "-1", "-i", carphone_path(), "-t", str(VFR_SECONDS)),
        *("-vf", f"fps={VFR_FAST},setpts='{pts}/TB'", "-fps_mode", "vfr"),
    )


def write_broken_copies(folder: Path, good: Path) -> dict[str, str]:
    """The bad files made without an encoder: ``empty.mp4``, ``truncated.mp4`` (the first half of
    ``good``, an FFmpeg MP4) and ``notes.mp4`` (text); returns their expected error reasons."""
    (folder / "empty.mp4").touch()
    data = good.read_bytes()  # FFmpeg writes moov after the media: half the file has none
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "notes.mp4").write_text("meeting notes, not a video\n" * 20)
    return {name: EXPECTED[name] for name in ("empty.mp4", "truncated.mp4", "notes.mp4")}


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """Write every case of ``EXPECTED`` into ``folder``; returns ``EXPECTED``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = make_clip(folder / "good_a.mp4", width=320, height=240, seconds=2)
    make_clip(folder / "good_b.mp4", width=480, height=360, seconds=3, audio=True)
    for name in ("crash.mp4", "hang.mp4", *ODD_NAMES):
        (folder / name).write_bytes(good.read_bytes())
    write_broken_copies(folder, good)
    data = good.read_bytes()
    mdat, moov = data.find(b"mdat"), data.find(b"moov")
    zeroed = data[: mdat + 4] + bytes(moov - 4 - (mdat + 4)) + data[moov - 4 :]
    (folder / "corrupt.mp4").write_bytes(zeroed)  # an intact index over zeroed frames
    photo = cv2.imencode(".jpg", np.full((240, 320, 3), 127, np.uint8))[1]
    (folder / "photo.mp4").write_bytes(photo.tobytes())
    with (folder / "huge.mp4").open("wb") as handle:  # sparse: no disk is used
        handle.truncate(MAX_VIDEO_BYTES + 1)
    sine = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "2")
    run_ffmpeg(*sine, "-c:a", "aac", str(folder / "audio_only.mp4"))
    _encode(folder / "one_frame.mp4", "-i", carphone_path(), "-frames:v", "1")
    make_clip(folder / "tiny_16x16.mp4", width=16, height=16, seconds=1)
    _encode(folder / "uhd_8k.mp4", "-i", carphone_path(), "-t", "1", "-vf", "fps=5,scale=7680:4320")
    lavfi = ("-f", "lavfi", "-i")
    _encode(folder / "hour_long_64x48.mp4", *lavfi, "testsrc=size=64x48:rate=5", "-t", "3600")
    make_vfr(folder / "vfr.mp4")
    rotate_clip(good, folder / "portrait.mp4", 90)
    _encode(folder / "no_face.mp4", *lavfi, "testsrc=size=320x240:rate=25", "-t", "2")
    assert sorted(os.listdir(folder)) == sorted(EXPECTED)
    return EXPECTED
