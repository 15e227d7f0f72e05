"""Mask a stream of frames (a clip): per-frame fit, temporal smoothing, hold-last-good, quarantine rules.

Each frame goes through the configured masker. The digital mask (a :class:`FrameFitter`) only fits each
frame (analysis, fit, drawn check; no render); in a clip with timing it follows the face from frame to
frame (:class:`~digimask.pipeline.eyes.track.FaceTracker`: the face detectors run only where the face was
lost) and solves the fits of several frames together. The avatar's per-frame numbers (head pose, each
eye's 13 fitted values and its drawn corneal reflex, :func:`columns`) are smoothed over time by a centred
Savitzky-Golay filter whose window is the longest that still passes ``keep_hz`` (a nystagmus, a
saccade's step, a blink's 100-300 ms closing) at ``min_gain`` of its amplitude: it removes the
detector's frame-to-frame jitter, not the movements. Each frame is rendered once, from the smoothed
numbers (a masker that renders every frame itself has its pixels dropped), and those numbers are what
the DIGIMASK block stores (:class:`~digimask.pipeline.dicom.private_block.FrameArray`), so ``render``
re-creates every frame bit-exactly.

A frame whose eyes are closed (the analysis refuses it with code ``eyes_closed``) is drawn from the nearest open frame
with both lids shut (:data:`CLOSED`), and so is a frame the analysis measured (fitted, or held where the fit
was refused) that the clip's lid rule finds shut
(:func:`~digimask.pipeline.eyes.lid_state.shut_frames`, the rule ``digimask measure`` counts blinks by: the
landmark models read shut lids as a narrow opening): blinks and closures stay in the mask. A frame where the face or an eye is lost
holds the last good parameters (:data:`HELD`) for at most ``hold_s``; a longer loss, or more than
``max_lost_fraction`` of the clip, quarantines the instance. No output frame is ever an input frame:
every frame is rendered from parameters.

Memory stays flat: frames are consumed one at a time and fitted (the first pass), then rendered one at a
time from the parameters (the second); only the parameter vectors are kept (36 numbers a frame, 2.6 MB for
18,000 frames), which the block stores anyway and the lid rule needs whole (its median is the clip's).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import chain
from typing import Any, Protocol, runtime_checkable

import numpy as np
from digimask.config.settings import Video
from digimask.pipeline.dicom.private_block import FrameArray
from digimask.pipeline.errors import MaskingFailed, Quarantined
from digimask.pipeline.eyes.landmarks import SIDES
from digimask.pipeline.eyes.lid_state import opening, shut_frames
from digimask.pipeline.mask.maskers import MaskResult, PixelMasker, mask_frame
from digimask.pipeline.mask.params import SCHEMA as PARAMS_SCHEMA
from pydicom.dataset import Dataset
from scipy.signal import savgol_coeffs

FRAMES_SCHEMA = "digimask.frames/1"
HEAD = ("yaw_deg", "pitch_deg", "roll_deg", "tx_mm", "ty_mm", "tz_mm")
EYE = ("medial_x_mm", "medial_y_mm", "lateral_x_mm", "lateral_y_mm", "upper_lid_1_mm", "upper_lid_2_mm",
       "upper_lid_3_mm", "lower_lid_1_mm", "lower_lid_2_mm", "lower_lid_3_mm", "gaze_yaw_deg",
       "gaze_pitch_deg", "iris_radius_mm",  # params.Eye.as_vector order
       "reflex_x", "reflex_y")  # the drawn corneal reflex (iris radii from the limbus centre); NaN: none
MEASURED, HELD, CLOSED = 0, 1, 2  # per-frame status codes of digimask.frames/1
STATUS_NAMES = {MEASURED: "measured", HELD: "held", CLOSED: "closed"}
MAX_WINDOW = 31


@runtime_checkable
class FrameFitter(Protocol):
    """A masker that gives a frame's avatar parameters without rendering it (the digital mask), so that a
    clip renders each frame once, from its smoothed parameters."""

    name: str

    def tracker(self) -> Any:
        """A new clip's state for ``fit_many`` (the face tracker; its ``to_dict()`` goes to the clip's notes)."""

    def fit_many(self, frames: Iterable[np.ndarray], ds: Dataset, tracker: Any = None,
                 batch: int = ...) -> Iterator[Mapping[str, Any] | MaskingFailed]:
        """Each frame's parameters, or the failure that refuses it (any error of the masker's own becomes
        one), in order; ``batch`` frames fitted together. An error of ``frames`` (the decoder) propagates."""


def columns(sides: Iterable[str]) -> list[str]:
    """The per-frame array's columns for the eyes ``sides`` (in :data:`SIDES` order)."""
    return list(HEAD) + [f"{side}.{name}" for side in SIDES if side in set(sides) for name in EYE]


def to_vector(params: Mapping[str, Any]) -> np.ndarray:
    """The avatar parameters that vary from frame to frame, as float32 in :func:`columns` order."""
    h = params["head"]
    values = [h["yaw_deg"], h["pitch_deg"], h["roll_deg"], *h["translation_mm"]]
    for side in SIDES:
        if side in params["eyes"]:
            e = params["eyes"][side]
            values += [*e["medial_shift_mm"], *e["lateral_shift_mm"], *e["upper_lid_mm"], *e["lower_lid_mm"],
                       e["gaze_yaw_deg"], e["gaze_pitch_deg"], e["iris_radius_mm"],
                       *(e.get("reflex") or (np.nan, np.nan))]
    return np.asarray(values, np.float32)


def frame_params(base: Mapping[str, Any], vector: np.ndarray) -> dict[str, Any]:
    """One frame's full parameters: ``base`` (the clip's constant part) with ``vector``'s values."""
    v = [float(x) for x in np.asarray(vector, np.float32)]
    eyes, k = {}, len(HEAD)
    for side in SIDES:
        if side in base["eyes"]:
            e = v[k:k + len(EYE)]
            eyes[side] = {"medial_shift_mm": e[0:2], "lateral_shift_mm": e[2:4], "upper_lid_mm": e[4:7],
                          "lower_lid_mm": e[7:10], "gaze_yaw_deg": e[10], "gaze_pitch_deg": e[11],
                          "iris_radius_mm": e[12], "reflex": None if np.isnan(e[13]) else e[13:15]}
            k += len(EYE)
    return {**base, "head": {"yaw_deg": v[0], "pitch_deg": v[1], "roll_deg": v[2], "translation_mm": v[3:6]},
            "eyes": eyes}


def series_params(base: Mapping[str, Any], frames: FrameArray) -> Iterator[dict[str, Any]]:
    """Every frame's parameters from a stored block (``render`` of a multi-frame instance)."""
    if frames.schema != FRAMES_SCHEMA:
        raise ValueError(f"unsupported per-frame schema {frames.schema!r}; expected {FRAMES_SCHEMA}")
    if frames.values.shape[1] != len(columns(base["eyes"])):
        raise ValueError(f"per-frame array has {frames.values.shape[1]} columns, the eyes need {len(columns(base['eyes']))}")
    for vector in frames.values:
        yield frame_params(base, vector)


def _layout(params: Mapping[str, Any]) -> tuple:
    """What must stay the same for the frames to share one array: everything but the varying numbers."""
    return (params.get("schema"), params.get("template"), params.get("mode"), tuple(sorted(params["eyes"])),
            tuple(sorted(params["camera"].items())), params.get("greyscale"), params.get("renderer"))


@cache
def _closure(side: str) -> np.ndarray:
    """Sine coefficients (mm) of the template's opening height along the fissure, lower to upper margin:
    upper-lid coefficients of ``lower - closure`` put the upper margin on the lower one (a shut eye)."""
    from digimask.pipeline.mask.avatar import margin_template
    from digimask.pipeline.mask.template import load

    tpl = load()
    eye = tpl.eyes[side]
    t = np.linspace(0.02, 0.98, 49)
    height = margin_template(eye, tpl, t, True)[:, 1] - margin_template(eye, tpl, t, False)[:, 1]
    basis = np.sin(np.pi * np.arange(1, 4)[None] * t[:, None])
    return np.linalg.lstsq(basis, height, rcond=None)[0]


def closed(vector: np.ndarray, sides: Iterable[str]) -> np.ndarray:
    """``vector`` with every eye's upper lid lowered onto its lower lid."""
    out, k = np.array(vector, np.float32), len(HEAD)
    for side in SIDES:
        if side in set(sides):
            out[k + 4:k + 7] = out[k + 7:k + 10] - _closure(side)
            k += len(EYE)
    return out


@dataclass(frozen=True)
class Smoother:
    """The centred Savitzky-Golay filter for a frame rate: the longest window (lowest jitter) that still
    passes ``keep_hz`` at ``min_gain`` of the amplitude."""

    window: int
    order: int
    rate_hz: float

    @classmethod
    def for_rate(cls, rate_hz: float, keep_hz: float, min_gain: float) -> Smoother:
        best = cls(1, 0, rate_hz)
        for order in (2, 4):
            for window in range(order + 1, MAX_WINDOW + 1, 2):  # odd windows longer than the order
                smoother = cls(window, order, rate_hz)
                if smoother.gain(keep_hz) >= min_gain and smoother.jitter_gain() < best.jitter_gain():
                    best = smoother
        return best

    def coefficients(self, length: int | None = None, pos: int | None = None) -> np.ndarray:
        """Weights over a window of ``length`` frames for the frame at ``pos`` (centre by default)."""
        length = self.window if length is None else length
        if length <= self.order:
            return np.eye(length)[length // 2 if pos is None else pos]
        return savgol_coeffs(length, self.order, pos=pos, use="dot")

    def gain(self, hz: float) -> float:
        """Amplitude gain of the centred filter for a sine of ``hz``."""
        c = self.coefficients()
        k = np.arange(len(c)) - len(c) // 2
        return float(np.sum(c * np.cos(2 * np.pi * hz * k / self.rate_hz)))

    def jitter_gain(self) -> float:
        """Standard deviation of white frame-to-frame noise after the filter, per unit before."""
        return float(np.sqrt(np.sum(self.coefficients() ** 2)))

    def run(self, vectors: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Smoothed vectors, one per input, at most ``window // 2`` frames behind."""
        h, buf, n = self.window // 2, deque(maxlen=self.window), 0
        for v in vectors:
            buf.append(np.asarray(v, np.float64))
            n += 1
            if n == self.window:  # the first frames: the first full window, off-centre
                for pos in range(h + 1):
                    yield self._apply(buf, pos)
            elif n > self.window:
                yield self._apply(buf, h)
        if n < self.window:  # a clip shorter than the window: one window over all of it
            for pos in range(n):
                yield self._apply(buf, pos)
        else:
            for pos in range(h + 1, self.window):
                yield self._apply(buf, pos)

    def _apply(self, buf: deque, pos: int) -> np.ndarray:
        window = np.stack(buf)
        out = self.coefficients(len(buf), pos) @ window
        gaps = np.isnan(out)  # a value absent in part of the window (a reflex not seen) passes unsmoothed
        out[gaps] = window[pos, gaps]
        return out.astype(np.float32)


@dataclass
class ClipResult:
    """Known when the stream is exhausted: what the encode stage writes to the DIGIMASK block."""

    params: dict[str, Any] | None = None  # the first frame's full parameters (None: a masker without any)
    frames: FrameArray | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class ClipMasker:
    """Masks one clip: iterate :meth:`run`; afterwards :attr:`result` holds the parameters for the block.

    ``rate_hz``: frames per second; ``None`` when the frames are not a time series (a multi-frame instance
    without timing): then each frame is masked on its own, unsmoothed, and any frame that cannot be masked
    (closed eyes included) fails the instance, as a photo would.
    ``total``: the clip's frame count when known (the lost-fraction rule then stops early).
    ``progress``: called with the number of frames done so far: fitted (a masker with avatar parameters,
    whose frames are then rendered in a second, cheaper pass) or produced (any other).
    """

    def __init__(self, masker: PixelMasker, options: Video, rate_hz: float | None, total: int | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        if rate_hz is not None and not rate_hz > 0:
            raise Quarantined(f"invalid frame rate {rate_hz}")
        self.masker, self.rate_hz, self.total = masker, rate_hz, total
        self.time_series = rate_hz is not None
        if self.time_series:
            self.options = options
            self.smoother = Smoother.for_rate(rate_hz, options.keep_hz, options.min_gain)
        else:
            self.options = options.model_copy(update={"hold_s": 0.0, "max_lost_fraction": 0.0})
            self.smoother = Smoother(1, 0, 1.0)
        self.hold_frames = int(self.options.hold_s * (rate_hz or 0) + 1e-9)
        self.progress = progress
        self.result = ClipResult()

    def run(self, frames: Iterable[np.ndarray], ds: Dataset) -> Iterator[np.ndarray]:
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise Quarantined("no frames")
        if isinstance(self.masker, FrameFitter):
            if self.time_series:
                tracker = self.masker.tracker()
                fitted = self.masker.fit_many(chain([first], frames), ds, tracker)
            else:  # unrelated frames: each fitted alone, as a photo, without tracking
                tracker, fitted = None, self.masker.fit_many(chain([first], frames), ds, batch=1)
            source = self._avatar(fitted, tracker)
        else:
            try:
                result: MaskResult | MaskingFailed = mask_frame(self.masker, first, ds)
            except MaskingFailed as exc:
                result = exc  # only a masker that reads the image refuses one: the avatar's
            if isinstance(result, MaskResult) and (result.params is None or result.params.get("schema") != PARAMS_SCHEMA):
                source = self._stateless(result, frames, ds)  # a masker without avatar parameters (blank, ...)
            else:
                source = self._avatar(self._masked_params(result, frames, ds))
        yield from source

    def _stateless(self, result: MaskResult, frames: Iterator[np.ndarray], ds: Dataset) -> Iterator[np.ndarray]:
        yield result.pixels
        n = 1
        for frame in frames:
            if self.progress:
                self.progress(n)
            yield mask_frame(self.masker, frame, ds).pixels
            n += 1
        if self.progress:
            self.progress(n)
        self.result = ClipResult(dict(result.params) if result.params is not None else None, None, {"frames": n})

    def _masked_params(self, first: MaskResult | MaskingFailed, frames: Iterator[np.ndarray],
                       ds: Dataset) -> Iterator[Mapping[str, Any] | MaskingFailed]:
        """Parameters from a masker that renders each frame (its pixels are dropped), after the first
        frame's result."""
        yield first if isinstance(first, MaskingFailed) else first.params or {}
        for frame in frames:
            try:
                yield mask_frame(self.masker, frame, ds).params or {}
            except MaskingFailed as exc:
                yield exc

    def _avatar(self, fitted: Iterator[Mapping[str, Any] | MaskingFailed], tracker: Any = None
                ) -> Iterator[np.ndarray]:
        """Each frame's parameters (or failure) from ``fitted``; the frames the lid rule finds shut drawn
        shut; smoothed, then rendered (once)."""
        from digimask.pipeline.mask.digital_mask import render_params

        resolver = _Resolver(self)
        resolved = []
        for done, frame in enumerate(resolver.run(fitted), 1):
            resolved.append(frame)
            if self.progress:
                self.progress(done)
        status = [code for _, code, _ in resolved]
        vectors = [vector for vector, _, _ in resolved]
        if self.time_series:
            shut = shut_frames([h for _, _, (h, _) in resolved], [c for _, _, (_, c) in resolved])
            for i, is_shut in enumerate(shut):
                if is_shut and status[i] != CLOSED:
                    vectors[i], status[i] = closed(vectors[i], resolver.layout[3]), CLOSED
        values = self._smoothed(vectors, np.asarray(status) == CLOSED, resolver.layout[3])
        for vector in values:
            yield render_params(frame_params(resolver.constant, vector))
        frame_array = FrameArray(FRAMES_SCHEMA, np.stack(values), np.asarray(status, np.uint8))
        counts = {STATUS_NAMES[c]: int((frame_array.status == c).sum()) for c in STATUS_NAMES}
        self.result = ClipResult(
            {**frame_params(resolver.constant, values[0]), "measurements": resolver.measurements}, frame_array,
            {"frames": len(values), **counts, "smoothing_window": self.smoother.window,
             "smoothing_order": self.smoother.order, **({"face": tracker.to_dict()} if tracker is not None else {})})

    def _smoothed(self, vectors: list[np.ndarray], shut: np.ndarray, sides: Iterable[str]) -> list[np.ndarray]:
        """The smoothed vectors; the lids smoothed within each run of shut or open frames only, so that a
        closing or an opening stays where it was measured, and a short reopening within a closure (or a
        blink of a few frames) is not averaged away."""
        out = np.stack(list(self.smoother.run(vectors)))  # never empty: the resolver refuses a clip without a frame
        lids = [i for i, name in enumerate(columns(sides)) if "_lid_" in name]
        edges = np.flatnonzero(np.diff(shut.astype(np.int8))) + 1
        if lids and len(edges):
            for a, b in zip([0, *edges], [*edges, len(vectors)]):
                out[a:b, lids] = np.stack(list(self.smoother.run(vectors[a:b])))[:, lids]
        return list(out)


class _Resolver:
    """Each frame's unsmoothed vector, status and opening (mean fissure height, all eyes closed), in order;
    frames before the first open one wait (as statuses only) and are resolved from it."""

    def __init__(self, clip: ClipMasker) -> None:
        self.clip = clip
        self.constant: dict[str, Any] = {}  # the clip's constant parameters, from the first measured frame
        self.measurements: Any = None
        self.layout: tuple | None = None

    def _measure(self, fitted: Mapping[str, Any] | MaskingFailed) -> tuple[np.ndarray, tuple[float, bool]]:
        if isinstance(fitted, MaskingFailed):
            raise fitted
        params = dict(fitted)
        if "eyes" not in params or "camera" not in params:
            raise MaskingFailed(f"masker {self.clip.masker.name} gave no avatar parameters for a frame")
        if self.layout is None:
            self.layout = _layout(params)
            self.constant = {k: v for k, v in params.items() if k != "measurements"}
            self.measurements = params.get("measurements")
        elif _layout(params) != self.layout:
            raise MaskingFailed("the masked eyes changed within the clip", "clip_layout")
        return to_vector(params), _opening(params.get("measurements"))

    def run(self, fitted: Iterator[Mapping[str, Any] | MaskingFailed]
            ) -> Iterator[tuple[np.ndarray, int, tuple[float, bool]]]:
        opts, hold = self.clip.options, self.clip.hold_frames
        total = self.clip.total
        last: np.ndarray | None = None
        waiting: list[tuple[int, tuple[float, bool]]] = []
        lost = run = n = 0
        reasons: dict[str, tuple[str, int]] = {}  # failure code -> (its first reason, frames)
        for i, result in enumerate(fitted):
            n = i + 1
            vector = None
            try:
                (vector, opening), code = self._measure(result), MEASURED
            except MaskingFailed as exc:
                code = CLOSED if exc.code == "eyes_closed" and self.clip.time_series else HELD
                opening = _opening(exc.measurements)  # a frame the analysis measured but the fit refused
                if code == HELD:
                    lost, run = lost + 1, run + 1
                    label, count = reasons.get(exc.code, (exc.reason.split(": ")[0], 0))  # without its numbers
                    reasons[exc.code] = (label, count + 1)
                    if run > hold:
                        raise MaskingFailed(f"face or eye lost for more than {opts.hold_s:g} s (from frame "
                                            f"{i - run + 2}): {_top(reasons)}", "face_lost") from None
                    if total and lost > opts.max_lost_fraction * total:
                        raise MaskingFailed(f"more than {opts.max_lost_fraction:.0%} of {total} frames "
                                            f"unmaskable: {_top(reasons)}", "face_lost") from None
            if vector is not None:
                run, last = 0, vector
                for waited, waited_opening in waiting:
                    yield self._drawn(last, waited), waited, waited_opening
                waiting = []
                yield vector, code, opening
            elif last is None:
                waiting.append((code, opening))
            else:
                yield self._drawn(last, code), code, opening
        if last is None:
            raise MaskingFailed(f"no frame could be masked ({_top(reasons) if reasons else 'eyes closed'} "
                                f"in all {n})", "face_lost")
        if lost > opts.max_lost_fraction * n:
            raise MaskingFailed(f"more than {opts.max_lost_fraction:.0%} of {n} frames unmaskable: {_top(reasons)}",
                                "face_lost")

    def _drawn(self, last: np.ndarray, code: int) -> np.ndarray:
        return closed(last, self.layout[3]) if code == CLOSED else last


def _opening(measurements: Mapping[str, Any] | None) -> tuple[float, bool]:
    """:func:`~digimask.pipeline.eyes.lid_state.opening` of a frame's measurements, if it has any."""
    return opening((measurements or {}).get("eyes") or {})


def _top(reasons: Mapping[str, tuple[str, int]]) -> str:
    """The commonest kinds of failure first, each with its first reason and its frame count."""
    ranked = sorted(reasons.values(), key=lambda rc: -rc[1])
    return "; ".join(f"{reason} ({count} frame{'s' * (count > 1)})" for reason, count in ranked[:3])
