"""Model bundles: what they record, and that a modified bundle is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from model.bundle import (
    BACKBONE_FILE,
    MANIFEST,
    load_bundle,
    read_bundle_manifest,
    read_manifest,
    sha256_file,
)
from model.errors import BundleError

pytestmark = pytest.mark.e2e


def test_bundle_records_what_a_scan_needs(bundle, small_config):
    manifest = read_manifest(bundle)
    assert len(manifest["model_version"]) == 16
    assert manifest["backbone"]["name"] == "InceptionV3"
    assert manifest["backbone"]["input_size"] == small_config.backbone.input_size
    assert manifest["backbone"]["weights_source"] == "random"
    assert "random" in manifest["backbone"]["weights_label"]
    assert manifest["backbone"]["weights_sha256"] == sha256_file(bundle / BACKBONE_FILE)
    assert manifest["sampling"]["frames_per_window"] == small_config.sampling.frames_per_window
    assert manifest["face"]["margin"] == 1.3
    assert 0.0 <= manifest["decision"]["threshold"] <= 1.0
    assert manifest["decision"]["aggregation"] == "top_k_mean"
    assert manifest["labels"] == {"positive": "fake", "negative": "real"}
    assert manifest["metrics"]["validation"]["n"] >= 2
    assert manifest["training"]["videos"] == {"real": 8, "fake": 8}


def test_loaded_bundle_scores_like_the_saved_one(bundle):
    first, manifest = load_bundle(str(bundle))
    second, _ = load_bundle(str(bundle))
    assert first.config.decision.threshold == manifest["decision"]["threshold"]
    rng = np.random.default_rng(0)
    t, s = first.config.sampling.frames_per_window, first.config.backbone.input_size
    frames = rng.integers(0, 256, (2, t, s, s, 3), dtype=np.uint8)
    mask = np.ones((2, t), bool)
    np.testing.assert_allclose(
        first.score_windows(frames, mask), second.score_windows(frames, mask), atol=1e-6
    )


@pytest.fixture()
def copy(bundle, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def _rewrite_manifest(root, change) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def test_changed_weights_are_refused(copy):
    data = bytearray((copy / BACKBONE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / BACKBONE_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="tampered"):
        load_bundle(str(copy))


def test_edited_threshold_is_refused(copy):
    _rewrite_manifest(copy, lambda m: m["decision"].update(threshold=0.99))
    with pytest.raises(BundleError, match="model_version mismatch"):
        load_bundle(str(copy))


def test_missing_manifest_is_refused(copy):
    (copy / MANIFEST).unlink()
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(str(copy))


def test_head_with_code_is_refused_even_with_consistent_hashes(bundle_with_code_in_head):
    """Safe mode: a head that would run arbitrary Python (a Lambda layer) never loads, and the
    check that runs before a scan records anything refuses it too."""
    with pytest.raises(BundleError, match="safe mode"):
        load_bundle(str(bundle_with_code_in_head))
    with pytest.raises(BundleError, match="safe mode"):
        read_bundle_manifest(str(bundle_with_code_in_head))
