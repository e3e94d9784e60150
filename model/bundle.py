"""The model bundle: a directory (local or ``s3://``) with ``bundle.json`` and the weights.

``model_version`` is a hash of everything in ``bundle.json`` (which itself records the sha256 of
each weights file), so any change to the weights, the settings or the threshold yields a new
version, and a scan re-scores videos with it. Loading re-hashes every file and refuses a bundle
whose contents do not match; the head loads in Keras safe mode, so a bundle cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model.backbone import build_backbone, describe_source
from model.config import DetectorConfig
from model.dataset import LABELS
from model.detector import Detector, make_strategy
from model.errors import BundleError
from model.hashing import sha256_file
from model.litert import LiteModel
from model.runtime import FLOAT32, INT8, dtype_policy, plan_runtime
from model.storage import fetch_tree, is_s3

FORMAT_VERSION = 1
MANIFEST = "bundle.json"
BACKBONE_FILE = "backbone.weights.h5"
HEAD_FILE = "head.keras"
# Frames from the training data, for calibrating an int8 backbone (``model.quantize``); bundles
# written before int8 existed lack it and run in float only.
CALIBRATION_FILE = "calibration.npz"
_WEIGHT_KEYS = ("weights_source", "weights_label", "weights_sha256")


def content_version(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "model_version"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def save_bundle(
    out: str | Path,
    detector: Detector,
    *,
    metrics: dict[str, Any],
    training: dict[str, Any],
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write ``detector`` and its record to the local directory ``out``; returns the manifest.

    ``calibration`` frames (uint8 [N, S, S, 3], from the training data) let the bundle run with
    an int8 backbone."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    detector.backbone.save_weights(root / BACKBONE_FILE)
    detector.head.save(root / HEAD_FILE)
    names = [BACKBONE_FILE, HEAD_FILE]
    if calibration is not None:
        np.savez_compressed(root / CALIBRATION_FILE, frames=calibration.astype(np.uint8))
        names.append(CALIBRATION_FILE)
    files = {name: sha256_file(root / name) for name in names}
    config = detector.config.to_dict()
    config["backbone"].update(
        weights_source=detector.weights_source,
        weights_label=describe_source(detector.weights_source),
        weights_sha256=files[BACKBONE_FILE],
    )
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": {"positive": LABELS[1], "negative": LABELS[0]},
        **config,
        "files": files,
        "metrics": metrics,
        "training": training,
    }
    manifest["model_version"] = content_version(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    """Parse and verify ``bundle.json`` and the files it names."""
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} is not a model bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{path} is not valid JSON: {err}") from err
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: unsupported bundle format {manifest.get('format_version')!r}")
    if manifest.get("model_version") != content_version(manifest):
        raise BundleError(f"{path} was modified after it was written: model_version mismatch")
    for name, expected in manifest.get("files", {}).items():
        file = root / name
        if Path(name).name != name or not file.is_file():
            raise BundleError(f"bundle file {name!r} is missing")
        if sha256_file(file) != expected:
            raise BundleError(f"bundle file {name} does not match its recorded sha256: tampered")
    listed = set(manifest.get("files", {}))
    if not {BACKBONE_FILE, HEAD_FILE} <= listed <= {BACKBONE_FILE, HEAD_FILE, CALIBRATION_FILE}:
        raise BundleError(
            f"{path} must list {BACKBONE_FILE} and {HEAD_FILE} (and may list {CALIBRATION_FILE})"
        )
    return manifest


def read_bundle_manifest(uri: str) -> dict[str, Any]:
    """Verify a bundle, locally or on S3, without building the backbone: its manifest, the
    hashes of its files, and that its head loads in Keras safe mode. A scan calls this before it
    writes its run row, so every refusal comes before anything is recorded."""
    with tempfile.TemporaryDirectory(prefix="deeptrust-bundle-") as tmp:
        root = fetch_tree(uri, tmp)
        manifest = read_manifest(root)
        load_head(root)
        return manifest


def load_head(root: Path) -> keras.Model:
    """The sequence head, loaded in safe mode: a head that would run Python code is refused."""
    try:
        return keras.models.load_model(root / HEAD_FILE, safe_mode=True, compile=False)
    except (ValueError, TypeError) as err:
        raise BundleError(f"{HEAD_FILE} cannot be loaded in Keras safe mode: {err}") from err


def detector_config(manifest: dict[str, Any]) -> DetectorConfig:
    data = {k: manifest[k] for k in ("sampling", "face", "backbone", "head", "decision")}
    data["backbone"] = {k: v for k, v in data["backbone"].items() if k not in _WEIGHT_KEYS}
    return DetectorConfig.from_dict(data)


def load_bundle(
    uri: str, strategy: tf.distribute.Strategy | None = None, precision: str = FLOAT32
) -> tuple[Detector, dict[str, Any]]:
    """Verify and load a bundle from a local directory or an ``s3://`` prefix.

    ``precision`` (see ``model.runtime``) is how the backbone computes; its weights load from
    float32 whatever it is. ``int8`` quantizes the backbone with the bundle's calibration frames
    the first time, then takes it from the cache (``model.quantize.int8_backbone``).
    """
    if not is_s3(uri):
        return _load_local(Path(uri), strategy, precision)
    with tempfile.TemporaryDirectory(prefix="deeptrust-bundle-") as tmp:
        return _load_local(fetch_tree(uri, tmp), strategy, precision)


def _load_local(
    root: Path, strategy: tf.distribute.Strategy | None, precision: str
) -> tuple[Detector, dict[str, Any]]:
    manifest = read_manifest(root)
    config = detector_config(manifest)
    strategy = strategy or make_strategy()
    runtime = plan_runtime(precision, strategy)
    with strategy.scope():
        with dtype_policy(runtime.precision):
            backbone = build_backbone(config.backbone, None)
        backbone.load_weights(root / BACKBONE_FILE)
        head = load_head(root)
    lite = None
    if runtime.precision == INT8:
        from model.quantize import int8_backbone

        check_precision(manifest, INT8)
        model = int8_backbone(manifest["model_version"], backbone, read_calibration(root))
        lite = LiteModel(model)
    source = manifest["backbone"]["weights_source"]
    return Detector(config, backbone, head, strategy, source, runtime, lite), manifest


def check_precision(manifest: dict[str, Any], precision: str) -> None:
    """Refuse, before any work starts, a precision that the bundle cannot run in."""
    if precision == INT8 and CALIBRATION_FILE not in manifest.get("files", {}):
        raise BundleError(
            f"model {manifest['model_version']} holds no calibration frames "
            f"({CALIBRATION_FILE}), which int8 needs: it was trained before int8 existed. "
            "Train it again, or run it in float (--precision auto)"
        )


def read_calibration(root: Path) -> np.ndarray:
    """The calibration frames of the verified bundle at ``root`` (``check_precision`` first)."""
    with np.load(root / CALIBRATION_FILE, allow_pickle=False) as data:
        return data["frames"]
