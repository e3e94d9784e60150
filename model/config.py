"""Settings that travel inside a model bundle.

Every number that shapes what the model sees (frames per window, sampling rate, image size,
face-crop margin, threshold) lives here and is written to ``bundle.json``, so a scan always
samples videos exactly as the model was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class SamplingConfig:
    """How windows of frames are drawn from a video.

    The prototype took 20 frames, every 2nd frame of a ~30 fps clip, from the start only. We keep
    that window shape but spread up to ``max_windows`` windows over the whole video.
    """

    frames_per_window: int = 20
    sample_fps: float = 15.0
    max_windows: int = 16

    def __post_init__(self) -> None:
        if self.frames_per_window < 1:
            raise ValueError("frames_per_window must be at least 1")
        if self.sample_fps <= 0:
            raise ValueError("sample_fps must be positive")
        if self.max_windows < 1:
            raise ValueError("max_windows must be at least 1")


@dataclass(frozen=True)
class FaceCropConfig:
    """Face cropping: MTCNN on a downscaled frame, box reused across the window."""

    enabled: bool = True
    margin: float = 1.3  # FaceForensics++ crops 1.3x the detected box
    detect_max_side: int = 320
    min_confidence: float = 0.9


@dataclass(frozen=True)
class BackboneConfig:
    """The per-frame feature extractor."""

    name: str = "InceptionV3"
    input_size: int = 224
    feature_dim: int = 2048

    def __post_init__(self) -> None:
        if self.name != "InceptionV3":
            raise ValueError(f"unsupported backbone {self.name!r}; only InceptionV3 is built")
        if self.input_size < 75:
            raise ValueError("InceptionV3 needs an input size of at least 75 pixels")


@dataclass(frozen=True)
class HeadConfig:
    """The masked sequence head over per-frame features (the prototype's LSTM stack)."""

    lstm_units: tuple[int, ...] = (16, 8)
    dense_units: int = 8
    dropout: float = 0.4


@dataclass(frozen=True)
class DecisionConfig:
    """How window scores become a video verdict."""

    threshold: float = 0.5
    aggregation: str = "top_k_mean"
    top_k_fraction: float = 0.25
    target_fpr: float = 0.05

    def __post_init__(self) -> None:
        if self.aggregation not in ("top_k_mean", "mean", "max"):
            raise ValueError(f"unknown aggregation {self.aggregation!r}")
        if not 0.0 < self.top_k_fraction <= 1.0:
            raise ValueError("top_k_fraction must be in (0, 1]")


@dataclass(frozen=True)
class DetectorConfig:
    """Everything a bundle records about how the model reads a video."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    face: FaceCropConfig = field(default_factory=FaceCropConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        parts = {
            "sampling": SamplingConfig,
            "face": FaceCropConfig,
            "backbone": BackboneConfig,
            "head": HeadConfig,
            "decision": DecisionConfig,
        }
        kwargs = {}
        for name, part in parts.items():
            values = dict(data.get(name, {}))
            known = {f.name for f in fields(part)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"unknown {name} settings in bundle: {sorted(unknown)}")
            if name == "head" and "lstm_units" in values:
                values["lstm_units"] = tuple(values["lstm_units"])
            kwargs[name] = part(**values)
        return cls(**kwargs)
