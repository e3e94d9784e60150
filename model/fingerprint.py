"""A video's perceptual fingerprint: one PDQ hash a second, with its quality and time (vPDQ).

PDQ (Meta's perceptual image hash, the ``pdqhash`` package) turns a frame into 256 bits that
stay within a small Hamming distance under re-encoding, resizing and brightness changes, and a
quality from 0 to 100 that is low for flat, featureless frames. vPDQ hashes a video one frame a
second and compares videos frame by frame. Each frame also gets the hash of its mirror image,
which PDQ derives from the same transform, so a bank of known videos matches flipped copies too.

The decoder hashes the frames it reads anyway (``model.video.WindowSampler``), so a video is
decoded once for both its windows and its fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pdqhash

HASH_BITS = 256
HASH_BYTES = HASH_BITS // 8
HASH_HEX_CHARS = HASH_BITS // 4
# vPDQ's sampling: one hashed frame per second of video.
SECONDS_PER_HASH = 1.0
# PDQ reduces every frame to 64x64 luma before its transform; hashing a frame scaled to this
# side first gives the same hash within a bit or two, at a tenth of the cost on a 1080p frame.
HASH_MAX_SIDE = 512
# compute_dihedral's order: original, three rotations, then the flips; index 5 is the frame
# mirrored left to right.
_ORIGINAL, _MIRRORED = 0, 5


@dataclass(frozen=True)
class Fingerprint:
    """A video's hashes, one row per hashed frame: ``hashes`` and ``mirrored`` are packed bits
    [N, 32] uint8, ``quality`` [N] int (0..100), ``times`` [N] seconds from the first frame."""

    hashes: np.ndarray
    mirrored: np.ndarray
    quality: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def empty(cls) -> Fingerprint:
        bits = np.zeros((0, HASH_BYTES), np.uint8)
        return cls(bits, bits.copy(), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def stack(cls, frames: list[tuple[np.ndarray, np.ndarray, int, float]]) -> Fingerprint:
        """From (hash, mirrored hash, quality, time) per frame, in time order."""
        if not frames:
            return cls.empty()
        hashes, mirrored, quality, times = zip(*frames, strict=True)
        return cls(np.stack(hashes), np.stack(mirrored), np.array(quality), np.array(times))


def hash_frame(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """PDQ of one BGR frame and of its mirror image, as packed bits, with the frame's quality."""
    height, width = bgr.shape[:2]
    scale = HASH_MAX_SIDE / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    variants, quality = pdqhash.compute_dihedral(rgb)
    original = np.packbits(variants[_ORIGINAL].astype(bool))
    mirrored = np.packbits(variants[_MIRRORED].astype(bool))
    return original, mirrored, int(quality)


def hash_indices(frame_count: int, fps: float) -> np.ndarray:
    """The frames to hash: the first frame of every ``SECONDS_PER_HASH`` of video."""
    if frame_count < 1:
        return np.zeros(0, np.int64)
    if not fps > 0 or not np.isfinite(fps):
        return np.zeros(1, np.int64)
    step = fps * SECONDS_PER_HASH
    indices = np.round(np.arange(0.0, frame_count, step)).astype(np.int64)
    return np.unique(indices[indices < frame_count])


def to_hex(bits: np.ndarray) -> str:
    """A packed 256-bit hash as the 64 hex digits vPDQ and ThreatExchange use."""
    return bits.tobytes().hex()


def from_hex(text: str) -> np.ndarray:
    """64 hex digits as a packed hash; ValueError for anything else."""
    if len(text) != HASH_HEX_CHARS:
        raise ValueError(
            f"a PDQ hash has {HASH_HEX_CHARS} hex digits ({HASH_BITS} bits), not {len(text)}"
        )
    try:
        raw = bytes.fromhex(text)
    except ValueError as err:
        raise ValueError(f"a PDQ hash is hex digits only, not {text!r}") from err
    if len(raw) != HASH_BYTES:
        raise ValueError(f"a PDQ hash is hex digits only, not {text!r}")
    return np.frombuffer(raw, np.uint8).copy()
