"""The synthetic corpus: layout, manifest, determinism, decodability, and that fakes are swaps."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from model import synth

JPEG_BLOCK = 16  # a 4:2:0 JPEG macroblock: pixels beyond it cannot change with the face


def _read_manifest(root: Path) -> list[dict[str, str]]:
    with (root / synth.MANIFEST_NAME).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _decode(path: Path) -> tuple[float, list[np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    return fps, frames


def _first_fake(videos: int, seed: int) -> synth.VideoSpec:
    return next(spec for spec in synth.plan_corpus(videos, seed) if spec.swap is not None)


def _face_box(spec: synth.VideoSpec, frame: int) -> np.ndarray:
    source = synth.load_source(spec.source)
    matrix = synth.camera_matrices(spec.camera, source, spec.frames)[frame]
    index = source.index_at(spec.camera.offset_s + frame / synth.FPS)
    return synth.transform_box(matrix, source.boxes[index])


@pytest.fixture(scope="module")
def odd_corpus(tmp_path_factory) -> tuple[Path, list[synth.SynthVideo]]:
    out = tmp_path_factory.mktemp("synth")
    return out, synth.write_corpus(out, 3, seed=5)


@pytest.mark.component
def test_layout_and_manifest(corpus: Path) -> None:
    rows = _read_manifest(corpus)
    assert list(rows[0]) == list(synth.MANIFEST_COLUMNS)
    assert sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*.mp4")) == sorted(
        row["path"] for row in rows
    )
    assert [row["label"] for row in rows].count("real") == 6
    specs = {f"{spec.label}/{spec.name}.mp4": spec for spec in synth.plan_corpus(12, seed=1)}
    for row in rows:
        assert row["path"].startswith(row["label"] + "/")
        seconds = specs[row["path"]].frames / synth.FPS
        if row["label"] == "real":
            assert row["manipulated_start_s"] == row["manipulated_end_s"] == ""
            continue
        start, end = float(row["manipulated_start_s"]), float(row["manipulated_end_s"])
        assert 0.0 <= start < end <= seconds + 1e-9
        assert end - start >= synth.MIN_MANIPULATED_SHARE * seconds - 1e-9


@pytest.mark.component
def test_odd_count_favours_real_and_returns_what_it_wrote(odd_corpus) -> None:
    out, videos = odd_corpus
    assert [v.label for v in videos] == ["real", "real", "fake"]
    assert [v.path.relative_to(out).as_posix() for v in videos] == [
        row["path"] for row in _read_manifest(out)
    ]
    assert all(v.path.is_file() and 3.0 <= v.seconds <= 5.0 for v in videos)
    assert videos[0].manipulated_start_s is None and videos[2].manipulated_end_s is not None


@pytest.mark.component
def test_videos_decode_as_rendered(odd_corpus) -> None:
    _, videos = odd_corpus
    specs = synth.plan_corpus(3, seed=5)
    for video, spec in zip(videos, specs, strict=True):
        fps, frames = _decode(video.path)
        assert fps == pytest.approx(synth.FPS)
        assert len(frames) == spec.frames == round(video.seconds * video.fps)
        assert frames[0].shape == (synth.FRAME_HEIGHT, synth.FRAME_WIDTH, 3)
        rendered = synth.render_frames(spec)
        error = np.abs(frames[0].astype(float) - rendered[0]).mean()
        assert error < 4.0, f"{video.path.name}: decoded frame is {error:.1f} levels off"


@pytest.mark.component
def test_same_seed_writes_identical_files(odd_corpus, tmp_path: Path) -> None:
    out, videos = odd_corpus
    again = synth.write_corpus(tmp_path, 3, seed=5)
    for first, second in zip(videos, again, strict=True):
        assert first.path.relative_to(out) == second.path.relative_to(tmp_path)
        assert first.path.read_bytes() == second.path.read_bytes()


@pytest.mark.component
def test_refuses_to_mix_with_another_corpus(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "someone-else.mp4").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"someone-else\.mp4"):
        synth.write_corpus(tmp_path, 2, seed=0)
    assert not (tmp_path / synth.MANIFEST_NAME).exists()


@pytest.mark.unit
def test_different_seeds_give_different_videos() -> None:
    one, two = synth.plan_corpus(4, seed=1), synth.plan_corpus(4, seed=2)
    assert all(a != b for a, b in zip(one, two, strict=True))
    short = [replace(spec, frames=2) for spec in (one[0], two[0])]
    first, second = (synth.render_frames(spec)[0] for spec in short)
    assert np.abs(first.astype(int) - second).mean() > 5.0


@pytest.mark.unit
def test_fake_differs_from_its_real_counterpart_only_around_the_face() -> None:
    fake = replace(_first_fake(6, seed=3), frames=12)
    real = replace(fake, label=synth.REAL, swap=None)
    assert fake.swap is not None and fake.swap.first_frame == 0
    diff = np.abs(synth.render_frames(fake).astype(int) - synth.render_frames(real)).mean(axis=3)
    for k in range(fake.frames):
        x0, y0, x1, y1 = synth.mask_bounds(_face_box(fake, k), diff.shape[1:])
        x, y, w, h = _face_box(fake, k).astype(int)
        inside = diff[k, y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
        outside = diff[k].copy()
        outside[
            max(0, y0 - JPEG_BLOCK) : y1 + JPEG_BLOCK, max(0, x0 - JPEG_BLOCK) : x1 + JPEG_BLOCK
        ] = 0
        assert inside.mean() > 8.0, f"frame {k}: the swap barely changes the face"
        assert outside.max() == 0, f"frame {k}: the swap leaked outside the face region"


@pytest.mark.unit
def test_partial_fake_only_touches_its_range() -> None:
    spec = replace(_first_fake(6, seed=3), frames=20)
    assert spec.swap is not None
    partial = replace(spec, swap=replace(spec.swap, first_frame=5, end_frame=15))
    real = synth.render_frames(replace(spec, swap=None))
    changed = np.abs(synth.render_frames(partial).astype(int) - real).reshape(20, -1).max(axis=1)
    assert changed[5:15].min() > 0
    assert changed[:5].max() == changed[15:].max() == 0


@pytest.mark.unit
def test_swap_wobbles_from_frame_to_frame() -> None:
    """On a still photo with a still camera, a real face only flickers by noise; a swap jitters."""
    photos = synth.PHOTO_SOURCES
    spec = next(
        s
        for s in synth.plan_corpus(12, seed=4)
        if s.swap and {s.source, s.swap.donor} <= set(photos)
    )
    still = replace(
        spec,
        frames=10,
        camera=replace(spec.camera, pan_amp=(0.0, 0.0), zoom=0.0, roll_deg=(0.0, 0.0)),
        capture=replace(spec.capture, gain_amp=0.0, white_balance=(0.0, 0.0, 0.0)),
    )
    x, y, w, h = _face_box(still, 0).astype(int)

    def motion(s: synth.VideoSpec) -> float:
        face = synth.render_frames(s)[:, y : y + h, x : x + w].astype(float)
        return float(np.abs(np.diff(face, axis=0)).mean())

    assert motion(still) > 1.5 * motion(replace(still, swap=None))


@pytest.mark.unit
def test_similarity_transform_recovers_a_known_one() -> None:
    points = np.array([[10, 20], [40, 22], [25, 35], [12, 50], [38, 52]], np.float32)
    known = cv2.getRotationMatrix2D((5.0, 7.0), 12.0, 1.7)
    moved = points @ known[:, :2].T + known[:, 2]
    assert np.allclose(synth.similarity_transform(points, moved), known, atol=1e-4)


@pytest.mark.unit
def test_sensor_noise_has_the_asked_spread() -> None:
    noise = synth.sensor_noise(np.random.default_rng(0), (200, 300, 3), 4.0)
    assert noise.shape == (200, 300, 3)
    assert abs(float(noise.mean())) < 0.05
    assert float(noise.std()) == pytest.approx(4.0, rel=0.02)


@pytest.mark.unit
def test_clip_plays_back_and_forth() -> None:
    clip = synth.load_source(synth.CLIP_SOURCE)
    count = len(clip.frames)
    last = (count - 1) / clip.fps
    assert clip.index_at(0.0) == 0
    assert clip.index_at(last) == count - 1
    assert clip.index_at(last + 1 / clip.fps) == count - 2
    assert clip.landmarks.shape == (count, 5, 2) and clip.boxes.shape == (count, 4)


@pytest.mark.component
def test_write_video_encodes_frames_from_a_generator_at_the_rate_asked(tmp_path):
    frames = (np.full((48, 64, 3), 10 * i, np.uint8) for i in range(7))
    path = synth.write_video(tmp_path / "deep" / "clip.mp4", frames, fps=10.0)
    fps, decoded = _decode(path)
    assert (fps, len(decoded), decoded[0].shape) == (10.0, 7, (48, 64, 3))


@pytest.mark.unit
def test_write_video_refuses_no_frames(tmp_path):
    with pytest.raises(ValueError, match="no frame"):
        synth.write_video(tmp_path / "empty.mp4", iter(()))
