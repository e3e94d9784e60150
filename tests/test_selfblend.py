"""Self-blended fakes: masks, shared augmentation, outlines and determinism."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from model.landmarks import OUTLINE_VERTICES, outline_from_geometry, outline_from_keypoints
from model.selfblend import BlendConfig, augment_pair, blend_window

SIZE = 96


def textured_window(frames: int = 4, seed: int = 0) -> np.ndarray:
    """A window of noisy, structured frames, so every change to pixels shows."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (SIZE, SIZE))
    return np.stack([np.roll(base, t, axis=1) for t in range(frames)])


def face_outlines(frames: int) -> np.ndarray:
    points = np.array([[36.0, 40.0], [60.0, 40.0], [48.0, 52.0], [38.0, 64.0], [58.0, 64.0]])
    return np.repeat(outline_from_keypoints(points)[None], frames, axis=0)


@pytest.mark.unit
def test_outline_surrounds_the_keypoints_below_the_eyes_and_above_the_chin():
    points = np.array([[36.0, 40.0], [60.0, 40.0], [48.0, 52.0], [38.0, 64.0], [58.0, 64.0]])
    outline = outline_from_keypoints(points)
    assert outline.shape == (OUTLINE_VERTICES, 2)
    hull = cv2.convexHull(outline.astype(np.float32))
    for x, y in points:
        assert cv2.pointPolygonTest(hull, (float(x), float(y)), False) > 0
    # Brows above the eyes, chin below the mouth, cheeks beyond the eyes.
    assert outline[:, 1].min() < 40 - 0.4 * 24 and outline[:, 1].max() > 64 + 0.6 * 24
    assert outline[:, 0].min() < 36 and outline[:, 0].max() > 60


@pytest.mark.unit
def test_outline_turns_with_a_tilted_face():
    upright = np.array([[36.0, 40.0], [60.0, 40.0], [48.0, 52.0], [38.0, 64.0], [58.0, 64.0]])
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = upright.mean(axis=0)
    tilted = (upright - centre) @ rotation.T + centre
    expected = (outline_from_keypoints(upright) - centre) @ rotation.T + centre
    np.testing.assert_allclose(outline_from_keypoints(tilted), expected, atol=1e-6)


@pytest.mark.unit
def test_geometry_outline_stays_inside_the_crop():
    outline = outline_from_geometry(SIZE, margin=1.3)
    assert outline.min() > 0 and outline.max() < SIZE


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(12))
def test_blend_changes_pixels_only_under_its_mask_and_the_mask_lies_inside_the_frame(seed):
    frames = textured_window()
    mask = np.array([True, True, True, False])
    frames[~mask] = 0
    outline = face_outlines(1)[0]
    grown = outline.mean(axis=0) + 1.3 * (outline - outline.mean(axis=0))
    near_face = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillConvexPoly(near_face, cv2.convexHull(grown.round().astype(np.int32)), 1)
    fake, masks = blend_window(
        frames, mask, face_outlines(4), np.random.default_rng(seed), BlendConfig()
    )
    assert fake.dtype == np.uint8 and fake.shape == frames.shape
    for t in range(3):
        alpha = masks[t]
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0
        assert alpha.max() >= 0.2  # every blend ratio leaves a visible blend
        # The mask covers the face: nothing in the crop's corners, its mass on the outline.
        for corner in (alpha[:8, :8], alpha[:8, -8:], alpha[-8:, :8], alpha[-8:, -8:]):
            assert corner.max() < 1e-3  # invisible in 8-bit pixels
        assert (alpha * near_face).sum() >= 0.9 * alpha.sum()
        ys, xs = np.nonzero(alpha > 0.5 * alpha.max())
        assert 25 < xs.mean() < 71 and 30 < ys.mean() < 80
        untouched = alpha == 0.0
        assert untouched.any()
        np.testing.assert_array_equal(fake[t][untouched], frames[t][untouched])
        assert np.abs(fake[t].astype(int) - frames[t]).max() > 0
    np.testing.assert_array_equal(fake[3], frames[3])  # padding stays padding


@pytest.mark.unit
def test_blend_is_deterministic_by_seed():
    frames = textured_window()
    mask = np.ones(4, bool)
    outlines = face_outlines(4)
    first, _ = blend_window(frames, mask, outlines, np.random.default_rng(7), BlendConfig())
    again, _ = blend_window(frames, mask, outlines, np.random.default_rng(7), BlendConfig())
    other, _ = blend_window(frames, mask, outlines, np.random.default_rng(8), BlendConfig())
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.unit
def test_blend_wobbles_from_frame_to_frame_over_a_still_window():
    still = np.repeat(textured_window(1), 4, axis=0)
    fake, masks = blend_window(
        still, np.ones(4, bool), face_outlines(4), np.random.default_rng(3), BlendConfig()
    )
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(fake[0], fake[1])


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(8))
def test_a_real_window_and_its_fake_share_their_augmentation(seed):
    config = replace(
        BlendConfig(),
        jpeg_probability=1.0,
        noise_probability=1.0,
        blur_probability=1.0,
        resize_probability=1.0,
    )
    real = textured_window()
    mask = np.ones(4, bool)
    # An identical "fake" comes out identical: the same draw, noise field included.
    out_real, out_same = augment_pair(real, real.copy(), mask, np.random.default_rng(seed), config)
    np.testing.assert_array_equal(out_real, out_same)
    assert np.abs(out_real.astype(int) - real).mean() > 1.0
    # A real fake differs after augmentation only where (and near where) the blend changed it.
    fake, masks = blend_window(real, mask, face_outlines(4), np.random.default_rng(seed), config)
    out_real, out_fake = augment_pair(real, fake, mask, np.random.default_rng(seed), config)
    far = cv2.dilate((masks.max(axis=0) > 0).astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    np.testing.assert_array_equal(out_real[:, far], out_fake[:, far])


@pytest.mark.unit
def test_augmentation_leaves_padding_alone():
    real = textured_window()
    mask = np.array([True, True, False, False])
    real[~mask] = 0
    config = replace(BlendConfig(), noise_probability=1.0, jpeg_probability=1.0)
    out_real, out_fake = augment_pair(real, real.copy(), mask, np.random.default_rng(0), config)
    assert not out_real[2:].any() and not out_fake[2:].any()
