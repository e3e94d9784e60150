"""`deeptrust bench`: cheaper verdicts side by side, each a whole scan of the same corpus.

- ``full``: today's scan, every window, in the fastest float precision (the bench's own scan);
- ``adaptive``: adaptive sampling (``model.adaptive``) in the same precision;
- ``int8``: every window, the backbone in int8 (``model.quantize``);
- ``fast``: adaptive sampling with int8.

Each gets videos a minute, frames per verdict, and the video AUC on the corpus's labels (real/
and fake/ folders), over all videos and over the real videos with the partly manipulated fakes
only (the synthetic corpus knows which fakes are partial), and the videos whose flag differs from
today's scan's. The int8 backbone is quantized before the timed scans, in a cache of the bench's
own, and that time (less a float32 load of the bundle) is reported apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.adaptive import ADAPTIVE, FULL
from model.bundle import load_bundle
from model.metrics import roc_auc
from model.runtime import FLOAT32, INT8
from pipelines.bench.throughput import Scanned, Workspace, measure_scan, ratio
from pipelines.environment import environment


def auc_of(
    scanned: Scanned, labels: dict[str, tuple[int, bool]], partial_only: bool
) -> float | None:
    """Video AUC of one scan's scores; None where the corpus lacks either class."""
    pairs = [
        (label, scanned.scores[uri])
        for uri, (label, partial) in labels.items()
        if uri in scanned.scores and (not partial_only or label == 0 or partial)
    ]
    found = {label for label, _ in pairs}
    if found != {0, 1}:
        return None
    y, s = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    return round(roc_auc(y, s), 4)


def flags_changed(scanned: Scanned, full: Scanned, threshold: float) -> int:
    """Videos that one scan flags and the full scan does not, or the other way round."""
    return sum(
        (scanned.scores[uri] >= threshold) != (score >= threshold)
        for uri, score in full.scores.items()
    )


def load_seconds(bundle: str, precision: str) -> float:
    """Seconds to load ``bundle`` in ``precision``: in int8 with a cold cache, that is a float32
    load plus the quantization."""
    start = time.perf_counter()
    load_bundle(bundle, precision=precision)
    return time.perf_counter() - start


def measure_cheaper(
    space: Workspace,
    precision: str,
    scan_args: tuple[str, ...],
    full: Scanned,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Scan the corpus three more ways beside ``full`` and report each, keyed by its name."""
    labels = space.labels
    threshold = space.detector.config.decision.threshold
    with environment({"XDG_CACHE_HOME": str(Path(space.root) / "cache")}):
        progress("bench: quantizing the backbone to int8")
        float_s = load_seconds(space.bundle, FLOAT32)
        quantize_s = load_seconds(space.bundle, INT8) - float_s
        scans = {"full": full}
        for name, scan_precision, sampling in (
            ("fast", INT8, ADAPTIVE),
            ("adaptive", precision, ADAPTIVE),
            ("int8", INT8, FULL),
        ):
            progress(f"bench: the scan, {name} ({scan_precision}, {sampling} sampling)")
            scans[name] = measure_scan(
                space, scan_precision, (*scan_args, f"--sampling={sampling}")
            )
    result: dict[str, Any] = {"int8_quantize_s": round(quantize_s, 1)}
    for name, scanned in scans.items():
        result |= {
            f"videos_per_min_{name}": round(scanned.videos_per_min, 2),
            f"frames_per_verdict_{name}": round(scanned.rate.frames / len(space.videos), 1),
            f"auc_{name}": auc_of(scanned, labels, partial_only=False),
            f"auc_partial_{name}": auc_of(scanned, labels, partial_only=True),
        }
    for name in ("adaptive", "int8", "fast"):
        result[f"flags_changed_{name}"] = flags_changed(scans[name], full, threshold)
    result["fast_vs_full"] = ratio(scans["fast"].videos_per_min, full.videos_per_min)
    result["partial_fakes"] = sum(partial for _, partial in labels.values())
    result["max_score_difference_int8"] = round(
        max(abs(scans["int8"].scores[uri] - full.scores[uri]) for uri in full.scores), 4
    )
    return result
