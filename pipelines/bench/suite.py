"""`deeptrust bench`: every measurement of one run, side by side, and its text report.

``pipelines.bench.throughput`` measures decoding, the model, the prototype's loop, the scan and
peak memory; ``pipelines.bench.cheaper`` the cheaper verdicts (adaptive sampling, int8);
``--options`` adds ``pipelines.bench.options``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.runtime import FLOAT32
from pipelines.bench.cheaper import measure_cheaper
from pipelines.bench.options import measure_options
from pipelines.bench.throughput import (
    PROTOTYPE_VIDEOS,
    BenchSettings,
    PrototypeLoop,
    measure_decode,
    measure_model,
    measure_peak_rss,
    measure_scan,
    prepare,
    ratio,
    scan_shape,
    stacked_windows,
)


def run_bench(
    settings: BenchSettings,
    progress: Callable[[str], None],
    with_options: bool = False,
) -> dict[str, Any]:
    """Every measurement in one run; returns the numbers and their ratios. ``with_options``
    adds each fast-path option against its alternative (``pipelines.bench.options``)."""
    with tempfile.TemporaryDirectory(prefix="deeptrust-bench-") as tmp:
        space = prepare(Path(tmp), settings, progress)
        precision = space.detector.runtime.precision
        batch, workers = scan_shape(settings.scan_args)
        progress("bench: decoding")
        decode, decoded = measure_decode(space)
        frames, mask = stacked_windows(decoded)
        del decoded  # the stacked copy is all the model needs
        loop = PrototypeLoop(space.bundle, space.videos[0])
        looped = space.videos[:PROTOTYPE_VIDEOS]
        half, looped_half = len(frames) // 2, len(looped) // 2
        progress("bench: the model alone and the prototype's loop, first halves")
        model = measure_model(space.detector, frames[:half], mask[:half], batch, workers)
        prototype = loop.measure(looped[:looped_half])
        progress("bench: the scan")
        full = measure_scan(space, precision, settings.scan_args)
        scanned = full.rate
        progress("bench: the model alone and the prototype's loop, second halves")
        model += measure_model(space.detector, frames[half:], mask[half:], batch, workers)
        prototype += loop.measure(looped[looped_half:])
        cheaper = measure_cheaper(space, precision, settings.scan_args, full, progress)
        progress("bench: peak memory, short and long video")
        rss_short, rss_long = measure_peak_rss(space, settings)
        result = {
            "decode_fps": round(decode.fps, 2),
            "model_fps": round(model.fps, 2),
            "prototype_fps": round(prototype.fps, 2),
            "scan_fps": round(scanned.fps, 2),
            "scan_videos_per_min": round(full.videos_per_min, 2),
            "peak_rss_short_mb": round(rss_short, 1),
            "peak_rss_long_mb": round(rss_long, 1),
            "scan_vs_model": ratio(scanned.fps, model.fps),
            "scan_vs_prototype": ratio(scanned.fps, prototype.fps),
            "model_vs_prototype": ratio(model.fps, prototype.fps),
            "decode_vs_model": ratio(decode.fps, model.fps),
            "rss_long_vs_short": ratio(rss_long, rss_short),
            "precision": precision,
            "prototype_precision": FLOAT32,
            "videos": len(space.videos),
            "scan_frames": scanned.frames,
            "scan_seconds": round(scanned.seconds, 1),
            "frames_per_video": round(scanned.frames / len(space.videos), 1),
            "image_size": space.detector.config.backbone.input_size,
            "model_version": space.manifest["model_version"],
            "backbone_weights": space.manifest["backbone"]["weights_label"],
            "scan_args": list(settings.scan_args),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            **cheaper,
        }
        if with_options:
            result["options"] = measure_options(space, frames, mask, batch, scanned, progress)
    return result


def format_report(result: dict[str, Any]) -> str:
    """The numbers and ratios as text, for people; ``--json`` prints ``result`` itself."""
    lines = [
        f"model {result['model_version']} ({result['backbone_weights']}), "
        f"{result['image_size']} px, {result['precision']}; {result['videos']} videos, "
        f"{result['frames_per_video']} frames each; {result['cpus']} CPUs, "
        f"load {result['load_average_1m']}",
        f"{'decode':>10}: {result['decode_fps']:8.2f} frames/s",
        f"{'model':>10}: {result['model_fps']:8.2f} frames/s (the limit)",
        f"{'prototype':>10}: {result['prototype_fps']:8.2f} frames/s "
        f"({result['prototype_precision']}, first window only)",
        f"{'scan':>10}: {result['scan_fps']:8.2f} frames/s, "
        f"{result['scan_videos_per_min']:.2f} videos/min (whole videos, start-up included)",
        f"scan/model {result['scan_vs_model']}, scan/prototype {result['scan_vs_prototype']}, "
        f"decode/model {result['decode_vs_model']}",
        f"peak RSS: {result['peak_rss_short_mb']} MiB short video, "
        f"{result['peak_rss_long_mb']} MiB long video (x{result['rss_long_vs_short']})",
    ]
    for name in ("full", "adaptive", "int8", "fast"):
        auc, partial = result[f"auc_{name}"], result[f"auc_partial_{name}"]
        lines.append(
            f"{name:>10}: {result[f'videos_per_min_{name}']:8.2f} videos/min, "
            f"{result[f'frames_per_verdict_{name}']:7.1f} frames a verdict, AUC {auc} "
            f"(partly manipulated: {partial})"
        )
    lines.append(
        f"flags that differ from the full scan's: adaptive {result['flags_changed_adaptive']}, "
        f"int8 {result['flags_changed_int8']}, fast {result['flags_changed_fast']}"
    )
    lines.append(
        f"fast/full {result['fast_vs_full']}; int8 moved a video's score by at most "
        f"{result['max_score_difference_int8']}; quantizing took {result['int8_quantize_s']} s"
    )
    for row in result.get("options", []):
        lines.append(
            f"option {row['option']:>10} = {row['value']:<16} {row['measure']:>9} "
            f"{row['fps']:8.2f} frames/s  x{row['ratio']} vs {row['baseline']}"
        )
    return "\n".join(lines)
