"""Why a file is not a decodable video, from its first bytes and its MP4/MOV box structure.

OpenCV only says that it could not open a file. These checks read a few bytes (and, for an
ISO-BMFF file, its top-level boxes and the track headers inside ``moov``) to give the error row a
specific reason: an image under a video name, an upload cut off before its ``moov`` atom, or a
file with no video track.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
HEAD_BYTES = 16
# A moov box this large is corrupt, not a long video: don't read it into memory.
_MAX_MOOV_BYTES = 64 << 20
# Boxes whose payload is a list of child boxes, on the path moov -> trak -> mdia -> hdlr.
_CONTAINERS = (b"moov", b"trak", b"mdia")


def image_format(head: bytes) -> str | None:
    """``"JPEG"``, ``"PNG"`` or ``"GIF"`` when ``head`` starts like that image format."""
    for signature, name in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def _boxes(handle: BinaryIO, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload offset, payload size) of each box from the handle's position to ``end``."""
    position = handle.tell()
    while position + 8 <= end:
        handle.seek(position)
        size, kind = struct.unpack(">I4s", handle.read(8))
        header = 8
        if size == 1:
            raw = handle.read(8)
            if len(raw) < 8:
                return
            size, header = struct.unpack(">Q", raw)[0], 16
        elif size == 0:
            size = end - position
        if size < header:
            return
        yield kind, position + header, min(size, end - position) - header
        position += size


def _handler_types(handle: BinaryIO, offset: int, size: int) -> list[str]:
    """The ``hdlr`` handler types ("vide", "soun", ...) of the tracks in a ``moov`` payload."""
    found = []
    handle.seek(offset)
    for kind, child, child_size in list(_boxes(handle, offset + size)):
        if kind in _CONTAINERS:
            found += _handler_types(handle, child, child_size)
        elif kind == b"hdlr" and child_size >= 12:
            handle.seek(child + 8)  # version/flags, pre_defined
            found.append(handle.read(4).decode("latin-1"))
    return found


def mp4_problem(path: str) -> tuple[str, str] | None:
    """``(code, detail)`` for an MP4/MOV file that cannot hold a decodable video, else None.

    ``truncated``: the file starts like an MP4 but has no ``moov`` atom (the index of its
    samples), as when an upload is cut off. ``no_video_stream``: its tracks hold no video.
    """
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        handle.seek(0)
        top = list(_boxes(handle, end))
        if not top or top[0][0] != b"ftyp":
            return None
        moov = next(((offset, size) for kind, offset, size in top if kind == b"moov"), None)
        if moov is None:
            return "truncated", "an MP4 without a moov atom: the file was cut off"
        if moov[1] > _MAX_MOOV_BYTES:
            return None
        handlers = _handler_types(handle, *moov)
    if "vide" not in handlers:
        tracks = ", ".join(sorted(set(handlers))) or "none"
        return "no_video_stream", f"the file holds no video track (track types: {tracks})"
    return None
