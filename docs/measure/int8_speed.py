"""What the average-pool rewrite (model/avgpool.py) gives the int8 backbone, frames a second.

Quantizes a bundle's backbone twice, as the scan does (average pools rewritten for XNNPACK) and
as converted directly (its nine int8 average pools left to LiteRT's own kernels), and times each
in LiteRT on the same 32-frame batch, with the bare Keras backbone in mixed_bfloat16 beside them,
then the rewritten one on calls of 8 and 16 frames. Reproduces the speeds that docs/performance.md
quotes under "Cheaper verdicts":

    deeptrust synth train --videos 40 --seed 3
    deeptrust train train --out bundle224 --backbone-weights random
    python docs/measure/int8_speed.py bundle224
"""

import sys
import time
from pathlib import Path

import numpy as np

from model.bundle import load_bundle, read_calibration
from model.litert import LiteModel
from model.quantize import convert_backbone, quantize

BATCH = 32
REPEATS = 5


def frames_per_second(call, frames: np.ndarray) -> float:
    call(frames)  # warm: XNNPACK packs its weights, Keras traces
    start = time.perf_counter()
    for _ in range(REPEATS):
        call(frames)
    return REPEATS * len(frames) / (time.perf_counter() - start)


def main(bundle: str) -> None:
    bf16, _ = load_bundle(bundle, precision="mixed_bfloat16")
    calibration = read_calibration(Path(bundle))
    frames = np.resize(calibration, (BATCH, *calibration.shape[1:]))
    keras_fps = frames_per_second(lambda x: bf16.predict(bf16.backbone, x), frames)
    print(f"Keras backbone, mixed_bfloat16: {keras_fps:.1f} frames/s")
    backbone = load_bundle(bundle, precision="float32")[0].backbone  # what int8 is made from
    for name, model in (
        ("int8, converted directly", quantize(backbone, calibration)),
        ("int8, average pools rewritten", convert_backbone(backbone, calibration)),
    ):
        lite = LiteModel(model)
        fps = frames_per_second(lambda x, run=lite: run(frames=x), frames)
        print(f"{name}: {fps:.1f} frames/s")
    # The rewritten model at smaller calls: the scan's int8 calls are not padded to 32 rows.
    for rows in (8, 16):
        fps = frames_per_second(lambda x, n=rows: lite(frames=x[:n]), frames) * rows / BATCH
        print(f"int8, average pools rewritten, {rows} frames a call: {fps:.1f} frames/s")


if __name__ == "__main__":
    main(sys.argv[1])
