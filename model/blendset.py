"""Training pairs from real videos: each sampled window, and self-blended fakes of it.

A video is sampled exactly as the scan samples it (``WindowSampler``), so the detector trains
on the windows it will score. Each window's face outline is found on its first and last frames
and interpolated between them, so the blend mask follows the face as it moves. Every window
yields ``variants`` pairs of (real, fake), each pair with its own blend and its own shared
augmentation. Draws are seeded by (seed, video index, window, variant), so a run repeats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from model.config import DetectorConfig
from model.landmarks import LandmarkFinder, Outline
from model.selfblend import BlendConfig, augment_pair, blend_window
from model.video import SampledVideo, WindowSampler


@dataclass
class WindowPairs:
    """One video's pairs: real and fake windows [N, T, S, S, 3] uint8 sharing ``mask`` [N, T]."""

    real: np.ndarray
    fake: np.ndarray
    mask: np.ndarray
    outline_sources: Counter = field(default_factory=Counter)


def window_outlines(first: Outline, last: Outline, mask: np.ndarray) -> np.ndarray:
    """[T, K, 2] outlines, interpolated from the first real frame's to the last's."""
    steps = max(int(mask.sum()) - 1, 1)
    share = np.clip(np.arange(len(mask)) / steps, 0.0, 1.0)[:, None, None]
    return first.points[None] * (1.0 - share) + last.points[None] * share


class PairMaker:
    """Samples real videos and makes self-blended fakes of their windows."""

    def __init__(
        self,
        config: DetectorConfig,
        blend: BlendConfig,
        variants: int = 1,
        seed: int = 0,
        sampler: WindowSampler | None = None,
        finder: LandmarkFinder | None = None,
    ) -> None:
        if variants < 1:
            raise ValueError("variants must be at least 1")
        self._config = config
        self._blend = blend
        self._variants = variants
        self._seed = seed
        self._sampler = sampler or WindowSampler(config)
        self._finder = finder or LandmarkFinder(config.face.min_confidence)

    @property
    def variants(self) -> int:
        return self._variants

    def sample(self, path: str) -> SampledVideo:
        """The video's windows as the scan samples them (raises VideoError if it fails)."""
        return self._sampler.sample(path)

    def pairs(self, path: str, video_index: int) -> WindowPairs:
        """Pairs for every window of the video at ``path`` (raises VideoError if it fails)."""
        return self.pairs_of(self.sample(path), video_index)

    def pairs_of(self, video: SampledVideo, video_index: int) -> WindowPairs:
        margin = self._config.face.margin
        reals, fakes, masks = [], [], []
        sources: Counter = Counter()
        for w, (frames, mask) in enumerate(zip(video.frames, video.mask, strict=True)):
            present = np.flatnonzero(mask)
            if present.size == 0:
                continue
            first = self._finder.outline(frames[present[0]], margin)
            last = first
            if present.size > 1:
                last = self._finder.outline(frames[present[-1]], margin)
            if first.source != last.source:  # never interpolate a face into the crop's geometry
                first = last = first if first.source == "landmarks" else last
            sources[first.source] += 1
            outlines = window_outlines(first, last, mask)
            for variant in range(self._variants):
                rng = np.random.default_rng((self._seed, video_index, w, variant))
                fake, _ = blend_window(frames, mask, outlines, rng, self._blend)
                real, fake = augment_pair(frames, fake, mask, rng, self._blend)
                reals.append(real)
                fakes.append(fake)
                masks.append(mask)
        if not reals:
            empty = np.zeros((0, *video.frames.shape[1:]), np.uint8)
            return WindowPairs(empty, empty.copy(), np.zeros((0, video.mask.shape[1]), bool))
        return WindowPairs(np.stack(reals), np.stack(fakes), np.stack(masks), sources)


def frame_subset(pairs: WindowPairs, per_window: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_window`` evenly spread frames of each real and fake window, with labels
    (0 real, 1 fake): what the backbone is tuned on."""
    frames, labels = [], []
    for real, fake, mask in zip(pairs.real, pairs.fake, pairs.mask, strict=True):
        present = np.flatnonzero(mask)
        picks = present[np.unique(np.linspace(0, present.size - 1, per_window).round().astype(int))]
        frames += [real[picks], fake[picks]]
        labels += [np.zeros(picks.size, np.int8), np.ones(picks.size, np.int8)]
    if not frames:
        return np.zeros((0, *pairs.real.shape[2:]), np.uint8), np.zeros(0, np.int8)
    return np.concatenate(frames), np.concatenate(labels)
