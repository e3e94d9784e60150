"""The detector under tf.distribute, and where its backbone weights come from."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model.backbone import RANDOM, build_backbone
from model.config import BackboneConfig, DetectorConfig, SamplingConfig
from model.detector import Detector, make_strategy

pytestmark = pytest.mark.component

CONFIG = DetectorConfig(
    sampling=SamplingConfig(frames_per_window=4), backbone=BackboneConfig(input_size=75)
)


def _windows(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, 4, 75, 75, 3), dtype=np.uint8)
    mask = np.ones((batch, 4), bool)
    mask[0, 2:] = False  # a short video's padded window
    frames[~mask] = 0
    return frames, mask


def test_cpu_machine_gets_the_default_strategy():
    strategy = make_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_strategy_over_two_devices_matches_one_device():
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(cpus) == 2, "conftest splits the CPU into two logical devices"
    mirrored = Detector.build(CONFIG, RANDOM, strategy=make_strategy(cpus), seed=3)
    single = Detector.build(CONFIG, RANDOM, strategy=make_strategy([]), seed=3)
    single.head.set_weights(mirrored.head.get_weights())
    assert mirrored.replicas == 2
    frames, mask = _windows(6)
    np.testing.assert_allclose(
        mirrored.score_windows(frames, mask), single.score_windows(frames, mask), atol=1e-5
    )


def test_padded_frames_do_not_change_a_window_score():
    detector = Detector.build(CONFIG, RANDOM, seed=1)
    frames, mask = _windows(3)
    before = detector.score_windows(frames, mask)
    noisy = frames.copy()
    noisy[0, 2:] = 255  # garbage in the masked slots
    after = detector.score_windows(noisy, mask)
    np.testing.assert_allclose(before, after, atol=1e-6)


def test_the_backbone_is_traced_once_for_batches_of_any_size(monkeypatch):
    detector = Detector.build(CONFIG, RANDOM, seed=1)
    traced = []
    original = detector.backbone.call

    def tracing_call(inputs, *args, **kwargs):  # runs only while TensorFlow traces a call
        traced.append(tuple(inputs.shape))
        return original(inputs, *args, **kwargs)

    monkeypatch.setattr(detector.backbone, "call", tracing_call)
    for batch in (5, 11, 2):  # 18, 42 and 6 real frames: under, over and well under one chunk
        frames, mask = _windows(batch)
        assert detector.score_windows(frames, mask).shape == (batch,)
    # Every batch is padded to whole chunks of the one fixed shape, so nothing is retraced.
    assert traced == [(detector.chunk, 75, 75, 3)]


def test_random_backbone_is_reproducible_by_seed():
    a = build_backbone(CONFIG.backbone, RANDOM, seed=7)
    b = build_backbone(CONFIG.backbone, RANDOM, seed=7)
    c = build_backbone(CONFIG.backbone, RANDOM, seed=8)
    frames = _windows(1)[0][0]
    np.testing.assert_array_equal(a.predict(frames, verbose=0), b.predict(frames, verbose=0))
    assert not np.allclose(a.predict(frames, verbose=0), c.predict(frames, verbose=0))


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_backbone_loads_a_weights_file(tmp_path, suffix):
    """Air-gapped sites pass a weights file; we make one here instead of downloading ImageNet's."""
    source = build_backbone(CONFIG.backbone, RANDOM, seed=11)
    inception = source.get_layer("inception_v3")
    path = tmp_path / f"inception_notop{suffix}"
    if suffix == ".h5":
        # The layout of Keras' published ImageNet files, written by Keras' own legacy writer.
        import h5py
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, inception)
    else:
        inception.save_weights(path)
    loaded = build_backbone(CONFIG.backbone, str(path))
    frames = _windows(1)[0][0]
    np.testing.assert_allclose(
        loaded.predict(frames, verbose=0), source.predict(frames, verbose=0), atol=1e-6
    )


def test_a_file_that_is_not_inception_weights_is_refused(tmp_path):
    path = tmp_path / "other.weights.h5"
    tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)]).save_weights(path)
    with pytest.raises(ValueError, match="not an InceptionV3"):
        build_backbone(CONFIG.backbone, str(path))
