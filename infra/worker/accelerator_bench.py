"""Size a GPU worker without the scan's full stack: the model's and the decoders' frames/s.

    KERAS_BACKEND=jax python infra/worker/accelerator_bench.py model \
        --precisions float32,mixed_float16 --rows 256,512,1024
    python infra/worker/accelerator_bench.py decode --corpus DIR --processes 1,4,8,16

``model`` runs the detector's own Keras definitions (``model.backbone``, ``model.head``; random
weights) on whichever Keras 3 backend is installed, so it measures a GPU machine that has JAX or
PyTorch but not TensorFlow's CUDA build. Every call takes uint8 frames from host memory, as the
scan's calls do. ``decode`` samples windows in N processes at once with face crops off (MTCNN
needs TensorFlow), which gives decoding's frames/s per core on the worker's CPU. Each prints
one JSON line per setting. ``deeptrust bench`` remains the end-to-end measure where the whole
stack is installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a bare checkout

import numpy as np

from model.config import DetectorConfig, FaceCropConfig

WARM_UP_CALLS = 3


def model_rate(precision: str, rows: int, calls: int) -> dict:
    """Backbone and head over ``rows`` frames a call, ``calls`` times after warm-up."""
    import keras

    from model.backbone import RANDOM, build_backbone
    from model.head import build_head
    from model.runtime import dtype_policy

    config = DetectorConfig()
    t, dim, size = (
        config.sampling.frames_per_window,
        config.backbone.feature_dim,
        config.backbone.input_size,
    )
    with dtype_policy(precision):
        backbone = build_backbone(config.backbone, RANDOM)
        head = build_head(config.head, t, dim)
    frames = np.random.default_rng(0).integers(0, 256, (rows, size, size, 3), dtype=np.uint8)
    windows = max(1, rows // t)
    mask = np.ones((windows, t), bool)

    def call() -> None:
        features = np.asarray(backbone.predict_on_batch(frames), np.float32)
        np.asarray(head.predict_on_batch([np.resize(features, (windows, t, dim)), mask]))

    start = time.perf_counter()
    call()
    compile_s = time.perf_counter() - start
    for _ in range(WARM_UP_CALLS):
        call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    seconds = time.perf_counter() - start
    return {
        "measure": "model",
        "backend": keras.backend.backend(),
        "precision": precision,
        "rows_per_call": rows,
        "frames_per_s": round(rows * calls / seconds, 1),
        "first_call_s": round(compile_s, 1),
    }


def _sample_all(paths: list[str]) -> int:
    import cv2

    from model.video import WindowSampler

    cv2.setNumThreads(1)
    sampler = WindowSampler(DetectorConfig(face=FaceCropConfig(enabled=False)))
    return sum(int(sampler.sample(path).mask.sum()) for path in paths)


def decode_rate(videos: list[str], processes: int) -> dict:
    """Every process samples every video; frames/s counts the sampled frames of all of them."""
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_sample_all, [videos[:1]] * processes))  # imports and first open
        start = time.perf_counter()
        frames = sum(pool.map(_sample_all, [videos] * processes))
        seconds = time.perf_counter() - start
    return {
        "measure": "decode",
        "faces": False,
        "processes": processes,
        "frames_per_s": round(frames / seconds, 1),
        "frames_per_s_per_process": round(frames / seconds / processes, 1),
    }


def _numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="measure", required=True)
    model = sub.add_parser("model", help="the detector's models alone on the Keras backend")
    model.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    model.add_argument("--rows", type=_numbers, default=[256, 512, 1024])
    model.add_argument("--calls", type=int, default=20)
    decode = sub.add_parser("decode", help="window sampling in N processes (no face crops)")
    decode.add_argument("--corpus", required=True, help="a folder of .mp4 videos")
    decode.add_argument("--processes", type=_numbers, default=[1, 2, 4, 8, 16])
    args = parser.parse_args(argv)
    if args.measure == "model":
        for precision in args.precisions.split(","):
            for rows in args.rows:
                print(json.dumps(model_rate(precision, rows, args.calls)), flush=True)
        return
    videos = sorted(str(path) for path in Path(args.corpus).rglob("*.mp4"))
    if not videos:
        parser.error(f"{args.corpus} holds no .mp4 video")
    for processes in args.processes:
        print(json.dumps(decode_rate(videos, processes)), flush=True)


if __name__ == "__main__":
    main()
