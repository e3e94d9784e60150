"""Tuning the backbone's last blocks: what trains, what stays, and resuming from a checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from model.config import BackboneConfig, DetectorConfig, SamplingConfig

CONFIG = DetectorConfig(
    sampling=SamplingConfig(frames_per_window=4), backbone=BackboneConfig(input_size=75)
)


def frames_and_labels(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Half the frames carry a bright square: something a tuned block can learn."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 120, (n, 75, 75, 3), dtype=np.uint8)
    labels = np.arange(n) % 2
    frames[labels == 1, 20:50, 20:50] = 250
    return frames, labels.astype(np.int8)


def build(precision: str):
    from model.detector import Detector
    from model.runtime import RuntimePlan

    return Detector.build(CONFIG, "random", seed=0, runtime=RuntimePlan(precision=precision))


def weights_by_layer(detector) -> dict[str, list[np.ndarray]]:
    cnn = detector.backbone.get_layer("inception_v3")
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in cnn.layers}


def changed(before, after) -> set[str]:
    return {
        name
        for name, weights in before.items()
        if any(not np.array_equal(a, b) for a, b in zip(weights, after[name], strict=True))
    }


@pytest.mark.component
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_only_the_blocks_from_the_start_train(precision, tmp_path):
    from model.finetune import FineTuneOptions, tune_backbone

    detector = build(precision)
    before = weights_by_layer(detector)
    frames, labels = frames_and_labels()
    record = tune_backbone(
        detector,
        frames,
        labels,
        FineTuneOptions("mixed10", epochs=1, batch_size=8),
        tmp_path,
        progress=lambda message: None,
    )
    moved = changed(before, weights_by_layer(detector))
    names = [layer.name for layer in detector.backbone.get_layer("inception_v3").layers]
    first_tuned = names.index("mixed9") + 1
    assert moved, "no backbone weight trained"
    assert all(names.index(name) >= first_tuned for name in moved)
    assert record["from"] == "mixed10" and record["weights_trained"] > 0
    assert record["frames"] == 32 and record["fake_frames"] == 16
    assert set(record["last_epoch"]) >= {"loss", "auc"}


@pytest.mark.component
def test_a_finished_tuning_resumes_without_training_again(tmp_path):
    from model.finetune import FineTuneOptions, tune_backbone

    frames, labels = frames_and_labels()
    options = FineTuneOptions("mixed10", epochs=2, batch_size=8)
    first = build("float32")
    tune_backbone(first, frames, labels, options, tmp_path, progress=lambda message: None)
    messages = []
    second = build("float32")
    record = tune_backbone(second, frames, labels, options, tmp_path, progress=messages.append)
    assert messages == ["fine-tune: resuming after epoch 2 of 2"]
    for a, b in zip(first.backbone.get_weights(), second.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert record["last_epoch"]["loss"] > 0

    # Other settings start over rather than resume another run's weights.
    messages.clear()
    other = build("float32")
    tune_backbone(
        other,
        frames,
        labels,
        FineTuneOptions("mixed10", epochs=1, batch_size=8),
        tmp_path,
        progress=messages.append,
    )
    assert not any("resuming" in m for m in messages)


@pytest.mark.component
def test_an_unknown_start_block_is_refused():
    from model.finetune import FineTuneOptions

    with pytest.raises(ValueError, match=r"mixed1\.\.mixed10"):
        FineTuneOptions("conv2d_3")
    with pytest.raises(ValueError, match="epoch"):
        FineTuneOptions("all", epochs=0)
