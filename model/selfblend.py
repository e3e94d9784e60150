"""Self-blended fakes: a training fake made from one real face window.

After Shiohara and Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022): a
slightly altered copy of a face is blended back into its own frame. Source and target come from
the same pixels, so the fake differs from its real twin only by what every face swap leaves
behind: a blending boundary, a colour and frequency mismatch inside it, a small misalignment.
A detector trained on such pairs learns those traces rather than one generator's look.

Here the method works on whole windows, the unit the detector scores:
- one "swap" is drawn per window (colour and frequency changes, an affine shift, a mask and a
  blend ratio) and applied to every frame, with a small frame-to-frame wobble of the alignment,
  the mask and the colour, as real swaps show;
- the mask comes from the face's outline (``model.landmarks``), deformed, eroded or dilated and
  blurred by random amounts;
- the real window and its fake then go through the same compression, resizing, blur and noise,
  drawn once per pair, so nothing but the blend tells them apart.

Every random draw comes from the ``numpy.random.Generator`` passed in, so a seed makes it all
repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class BlendConfig:
    """How self-blended fakes are made; recorded in the bundle's training recipe."""

    # Source changes (colour)
    rgb_shift: float = 20.0  # per channel, in 8-bit levels
    hue_shift: float = 6.0  # in OpenCV's 0..180 hue units
    saturation_scale: float = 0.2  # relative
    value_scale: float = 0.2
    brightness: float = 0.1  # relative, applied as an offset of brightness * 255
    contrast: float = 0.15
    # Source changes (frequency)
    downscale: tuple[float, float] = (0.35, 0.9)  # down- then up-scaled by this share
    sharpen_probability: float = 0.3
    # Source changes (geometry): misalignment of the pasted copy
    shift: float = 0.03  # translation, as a share of the crop side
    scale: float = 0.04  # relative
    # Mask
    mask_deform: float = 0.08  # radial wobble of each outline vertex, relative
    mask_morph: float = 0.04  # erosion (<0) or dilation (>0), as a share of the crop side
    mask_blur: tuple[float, float] = (0.01, 0.06)  # Gaussian sigma, as a share of the crop side
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    # Frame-to-frame wobble within a window
    jitter_px: float = 0.7
    colour_flicker: float = 2.0  # per frame and channel, in 8-bit levels
    # Augmentation shared by a real window and its fake
    jpeg_quality: tuple[int, int] = (45, 95)
    jpeg_probability: float = 0.7
    resize: tuple[float, float] = (0.5, 1.0)
    resize_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    blur_probability: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 5.0)
    noise_probability: float = 0.3


@dataclass(frozen=True)
class Swap:
    """One window's draw: everything that stays the same from frame to frame."""

    rgb: np.ndarray  # [3] offsets
    hsv: tuple[float, float, float]  # hue shift, saturation scale, value scale
    brightness: float
    contrast: float
    downscale: float
    sharpen: bool
    shift: tuple[float, float]  # pixels
    scale: float
    vertex_scale: np.ndarray  # [K] radial scale of each outline vertex
    morph_px: int
    blur_sigma: float
    ratio: float


def draw_swap(rng: np.random.Generator, config: BlendConfig, size: int, vertices: int) -> Swap:
    c = config
    return Swap(
        rgb=rng.uniform(-c.rgb_shift, c.rgb_shift, 3),
        hsv=(
            rng.uniform(-c.hue_shift, c.hue_shift),
            1.0 + rng.uniform(-c.saturation_scale, c.saturation_scale),
            1.0 + rng.uniform(-c.value_scale, c.value_scale),
        ),
        brightness=rng.uniform(-c.brightness, c.brightness),
        contrast=1.0 + rng.uniform(-c.contrast, c.contrast),
        downscale=rng.uniform(*c.downscale),
        sharpen=bool(rng.random() < c.sharpen_probability),
        shift=tuple(rng.uniform(-c.shift, c.shift, 2) * size),
        scale=1.0 + rng.uniform(-c.scale, c.scale),
        vertex_scale=1.0 + rng.normal(0.0, c.mask_deform, vertices),
        morph_px=round(rng.uniform(-c.mask_morph, c.mask_morph) * size),
        blur_sigma=rng.uniform(*c.mask_blur) * size,
        ratio=float(rng.choice(c.blend_ratios)),
    )


def outline_mask(outline: np.ndarray, swap: Swap, size: int, offset: np.ndarray) -> np.ndarray:
    """A soft mask in [0, ratio] from the face outline, deformed as ``swap`` says."""
    centre = outline.mean(axis=0)
    points = centre + (outline - centre) * swap.vertex_scale[:, None] + offset
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    if swap.morph_px:
        kernel = np.ones((2 * abs(swap.morph_px) + 1,) * 2, np.uint8)
        op = cv2.dilate if swap.morph_px > 0 else cv2.erode
        mask = op(mask, kernel)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), swap.blur_sigma)
    return np.clip(soft, 0.0, 1.0) * swap.ratio


def altered_source(frame: np.ndarray, swap: Swap, offset: np.ndarray, flicker: np.ndarray):
    """The copy of ``frame`` that gets pasted: colour, frequency and geometry changed."""
    size = frame.shape[0]
    x = frame.astype(np.float32)
    x = (x - 127.5) * swap.contrast + 127.5 + swap.brightness * 255.0 + swap.rgb + flicker
    hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + swap.hsv[0]) % 180.0
    hsv[..., 1] *= swap.hsv[1]
    hsv[..., 2] *= swap.hsv[2]
    x = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    small = max(8, round(size * swap.downscale))
    x = cv2.resize(cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    if swap.sharpen:
        blurred = cv2.GaussianBlur(x, (0, 0), 1.0)
        x = cv2.addWeighted(x, 1.6, blurred, -0.6, 0)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), 0.0, swap.scale)
    matrix[:, 2] += np.asarray(swap.shift) + offset
    return cv2.warpAffine(x, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)


def blend_window(
    frames: np.ndarray,
    mask: np.ndarray,
    outlines: np.ndarray,
    rng: np.random.Generator,
    config: BlendConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended fake of one window, and the blend masks it used.

    ``frames`` is uint8 RGB [T, S, S, 3], ``mask`` [T] marks real frames, ``outlines`` [T, K, 2]
    holds each frame's face outline in crop pixels. Padded frames stay as they are (zero).
    Returns the fake [T, S, S, 3] uint8 and the masks [T, S, S] float32 in [0, 1].
    """
    size = frames.shape[1]
    swap = draw_swap(rng, config, size, outlines.shape[1])
    fake = frames.copy()
    masks = np.zeros(frames.shape[:3], np.float32)
    for t in np.flatnonzero(mask):
        wobble = rng.normal(0.0, config.jitter_px, 2)
        flicker = rng.normal(0.0, config.colour_flicker, 3)
        alpha = outline_mask(outlines[t], swap, size, rng.normal(0.0, config.jitter_px, 2))
        source = altered_source(frames[t], swap, wobble, flicker).astype(np.float32)
        target = frames[t].astype(np.float32)
        a = alpha[..., None]
        fake[t] = np.clip(source * a + target * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
        masks[t] = alpha
    return fake, masks


def augment_pair(
    real: np.ndarray,
    fake: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    config: BlendConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """The same compression, resizing, blur and noise for a real window and its fake.

    One draw serves both windows and every frame of them, noise included (the same noise field
    per frame), so augmentation never tells a real window from its fake.
    """
    c = config
    size = real.shape[1]
    quality = int(rng.integers(*c.jpeg_quality)) if rng.random() < c.jpeg_probability else None
    resize = rng.uniform(*c.resize) if rng.random() < c.resize_probability else None
    blur = rng.uniform(*c.blur_sigma) if rng.random() < c.blur_probability else None
    noise = rng.uniform(*c.noise_sigma) if rng.random() < c.noise_probability else None
    noise_seed = int(rng.integers(2**31))
    out_real, out_fake = real.copy(), fake.copy()
    for t in np.flatnonzero(mask):
        field = None
        if noise is not None:
            field = np.random.default_rng((noise_seed, int(t))).normal(0.0, noise, real.shape[1:])
        for window, out in ((real, out_real), (fake, out_fake)):
            out[t] = _augment_frame(window[t], size, quality, resize, blur, field)
    return out_real, out_fake


def _augment_frame(frame, size, quality, resize, blur, noise) -> np.ndarray:
    x = frame
    if resize is not None:
        small = max(8, round(size * resize))
        x = cv2.resize(cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA), (size, size))
    if blur is not None:
        x = cv2.GaussianBlur(x, (0, 0), blur)
    if noise is not None:
        x = np.clip(x.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if quality is not None:
        bgr = cv2.cvtColor(x, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            x = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return x
