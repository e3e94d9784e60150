"""Pictures from a flagged video for the review app: a thumbnail, and the face crops of a window.

Frames are decoded again from the video itself (a local file, or an ``s3://`` object fetched to
a temporary file), with the report's frame picker and face cropper, so the app shows what the
report shows. Pictures are kept in a small cache keyed by the video's exact bytes.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import cv2

from model.config import FaceCropConfig
from model.errors import VideoError
from model.storage import fetch, is_s3
from pipelines.moderation.report import STRIP_FRAMES, FaceCropper, window_frames

THUMBNAIL_WIDTH = 240
JPEG_QUALITY = 85
T = TypeVar("T")


@contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path to the video at ``uri`` for the block (a temporary copy for ``s3://``)."""
    if not is_s3(uri):
        path = Path(uri)
        if not path.is_file():
            raise VideoError("not_found", "the file does not exist")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="deeptrust-serve-") as tmp:
        yield fetch(uri, tmp)


def jpeg(rgb: Any) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise VideoError("unreadable", "the frame could not be encoded")
    return data.tobytes()


class Pictures:
    """Thumbnails and face crops of videos, made on demand and cached."""

    def __init__(self, face: FaceCropConfig, cache_size: int = 512) -> None:
        self._cropper = FaceCropper(face)
        self._crop_lock = threading.Lock()  # one face detector, not safe across threads
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size

    def _cached(self, key: tuple, make: Callable[[], T]) -> T:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        made = make()
        with self._cache_lock:
            self._cache[key] = made
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return made

    def thumbnail(self, uri: str, content_version: str, at_s: float) -> bytes:
        """A JPEG of the frame at ``at_s`` seconds, ``THUMBNAIL_WIDTH`` pixels wide."""

        def make() -> bytes:
            with local_copy(uri) as path:
                ((_, frame),) = window_frames(str(path), at_s, at_s, 1)
            height, width = frame.shape[:2]
            size = (THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width)))
            return jpeg(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))

        return self._cached(("thumbnail", uri, content_version, at_s), make)

    def faces(
        self, uri: str, content_version: str, start_s: float, end_s: float
    ) -> list[tuple[float, bytes]]:
        """Face crops (JPEG) of frames spread over the window, each with its time."""

        def make() -> list[tuple[float, bytes]]:
            return self.faces_of_file(uri, start_s, end_s)

        return self._cached(("faces", uri, content_version, start_s, end_s), make)

    def faces_of_file(self, uri: str, start_s: float, end_s: float) -> list[tuple[float, bytes]]:
        """Face crops of a window of any video, uncached (an uploaded file is gone soon)."""
        with local_copy(uri) as path:
            frames = window_frames(str(path), start_s, end_s, STRIP_FRAMES)
        with self._crop_lock:
            crops = self._cropper.crops([f for _, f in frames])
        return [(at, jpeg(face)) for (at, _), face in zip(frames, crops, strict=True)]
