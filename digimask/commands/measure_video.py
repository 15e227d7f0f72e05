"""``digimask measure`` on clips (``.mp4``/``.mov`` files, multi-frame and video DICOM): measurements over time.

Every frame is analysed as a photo is (``pipeline/eyes/analyse.py``). The record holds the per-frame series
(per eye MRD1, MRD2, fissure height, gaze; the deviation between the eyes; the lid state) and two kinds of
events:

- **blinks**: runs of frames whose lids are closed: the analysis refuses them as "eyes closed", or
  :func:`~digimask.pipeline.eyes.lid_state.shut_frames` finds them shut (the rule the mask draws by); each
  with its start and duration.
- **nystagmus indicator**: the dominant frequency and amplitude of the horizontal gaze trace (mean of the
  eyes, gaps interpolated, linear trend removed) between :data:`NYSTAGMUS_BAND_HZ`; ``present`` when the
  amplitude is at least :data:`NYSTAGMUS_MIN_DEG` and that frequency holds at least
  :data:`NYSTAGMUS_MIN_POWER` of the trace's power. These thresholds are screening heuristics, not a
  diagnosis: read the trace.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

MAX_BLINK_S = 1.0  # a longer closure is reported as a closure, not a blink
NYSTAGMUS_BAND_HZ = (1.0, 15.0)
NYSTAGMUS_MIN_DEG = 1.0
NYSTAGMUS_MIN_POWER = 0.3
MIN_TRACE_S = 2.0


def is_clip_file(path: Path) -> bool:
    """A video file by its suffix, or a DICOM file with several frames or a video stream."""
    from digimask.pipeline.imaging import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if path.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        return path.suffix.lower() in VIDEO_SUFFIXES
    import pydicom
    from pydicom.errors import InvalidDicomError

    from digimask.pipeline.dicom.decode import is_clip

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError):
        return False
    return is_clip(ds)


def measure_clip_file(path: Path, options, max_pixels: int = 60_000_000, max_frames: int = 36_000,
                      progress: bool = True) -> dict[str, Any]:
    """The ``measure`` record of one clip (``options``: :class:`~digimask.pipeline.eyes.analyse.AnalysisOptions`)."""
    from dataclasses import replace

    from digimask.pipeline.dicom import video
    from digimask.pipeline.errors import Quarantined
    from digimask.pipeline.imaging import VIDEO_SUFFIXES

    record: dict[str, Any] = {"path": str(path), "status": "ok", "reason": None, "mode": "clip", "eyes": {},
                              "head_pose": None}
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            info = video.probe(path)
            frames, rate, total = video.iter_frames(path), float(info.rate), info.frames
        else:
            import pydicom

            from digimask.pipeline.dicom.decode import stream
            from digimask.pipeline.dicom.header import laterality

            ds = pydicom.dcmread(path)
            clip = stream(ds, max_pixels, max_frames)
            options = replace(options, laterality=laterality(ds))
            frames, rate, total = clip.frames, clip.rate_hz, clip.count
        record.update(measure_clip(frames, rate, options, total, progress=progress, name=path.name))
    except Quarantined as exc:
        record.update(status="rejected", reason=exc.reason)
    return record


def measure_clip(frames: Iterable[np.ndarray], rate_hz: float | None, options, total: int | None = None,
                 *, progress: bool = False, name: str = "clip") -> dict[str, Any]:
    """Per-frame series and events of a clip; ``rate_hz`` None: frames without timing (no events)."""
    from tqdm import tqdm

    series = list(tqdm(_series(frames, rate_hz, options), total=total, desc=name, unit="frame",
                       disable=not progress, file=sys.stderr))
    measured = sum(f["status"] == "ok" for f in series)
    out: dict[str, Any] = {"frames": len(series), "rate_hz": rate_hz, "measured_frames": measured}
    if not measured:
        out.update(status="rejected", reason=f"no frame measured ({_commonest(series)})")
    _lid_states(series)
    out["series"] = series
    if rate_hz:
        out["blinks"] = blinks(series, rate_hz)
        out["nystagmus"] = nystagmus(series, rate_hz)
    return out


def _series(frames: Iterable[np.ndarray], rate_hz: float | None, options) -> Iterator[dict[str, Any]]:
    from digimask.pipeline.errors import MaskingFailed, Quarantined
    from digimask.pipeline.eyes.analyse import analyse
    from digimask.pipeline.eyes.track import FaceTracker

    measure = FaceTracker().analyse if rate_hz else analyse  # a clip's face is followed, as when masking
    for i, frame in enumerate(frames):
        entry: dict[str, Any] = {"frame": i, "t_s": round(i / rate_hz, 4) if rate_hz else None}
        try:
            m = measure(frame, options=options).measurements
        except Quarantined as exc:
            closed = isinstance(exc, MaskingFailed) and exc.code == "eyes_closed"
            entry.update(status="closed" if closed else "lost", reason=exc.reason)
            yield entry
            continue
        entry["status"] = "ok"
        entry["eyes"] = {side: {"mrd1_mm": round(float(e.mrd1_mm), 3), "mrd2_mm": round(float(e.mrd2_mm), 3),
                                "fissure_height_mm": round(float(e.fissure_height_mm), 3),
                                "gaze_h_deg": round(float(e.gaze_h_deg), 2), "gaze_v_deg": round(float(e.gaze_v_deg), 2),
                                "closed": bool(e.closed)}
                         for side, e in m.eyes.items()}
        b = m.binocular
        entry["deviation"] = ({"horizontal_deg": round(float(b.horizontal_deg), 2),
                               "vertical_deg": round(float(b.vertical_deg), 2)} if b else None)
        yield entry


def _lid_states(series: list[dict[str, Any]]) -> None:
    """Each frame's ``lid``: open, closed or unknown (face or eye lost)."""
    from digimask.pipeline.eyes.lid_state import UNMEASURED, opening, shut_frames

    ok = [f["status"] == "ok" for f in series]
    openings = [opening(f["eyes"]) if good else UNMEASURED for f, good in zip(series, ok)]
    shut = shut_frames([h for h, _ in openings], [c for _, c in openings])
    for f, good, is_shut in zip(series, ok, shut):
        if f["status"] == "closed":
            f["lid"] = "closed"
        elif not good:
            f["lid"] = "unknown"
        else:
            f["lid"] = "closed" if is_shut else "open"


def blinks(series: list[dict[str, Any]], rate_hz: float) -> dict[str, Any]:
    """Runs of closed lids: blinks (up to :data:`MAX_BLINK_S`) and longer closures, with start and duration."""
    runs, start = [], None
    for i, f in enumerate([*series, {"lid": "open"}]):
        if f["lid"] == "closed" and start is None:
            start = i
        elif f["lid"] != "closed" and start is not None:
            runs.append((start, i - start))
            start = None
    events = [{"start_s": round(s / rate_hz, 3), "duration_ms": round(1000 * n / rate_hz, 1), "frames": n} for s, n in runs]
    short = [e for e in events if e["duration_ms"] <= 1000 * MAX_BLINK_S]
    minutes = len(series) / rate_hz / 60
    return {"count": len(short), "per_minute": round(len(short) / minutes, 2) if minutes else None,
            "events": short, "closures": [e for e in events if e["duration_ms"] > 1000 * MAX_BLINK_S]}


def nystagmus(series: list[dict[str, Any]], rate_hz: float) -> dict[str, Any]:
    """Dominant frequency and amplitude of the horizontal gaze trace (degrees, half peak-to-peak)."""
    from scipy.signal import periodogram

    t = np.arange(len(series)) / rate_hz
    trace = np.array([np.mean([e["gaze_h_deg"] for e in f["eyes"].values()]) if f["status"] == "ok" else np.nan
                      for f in series])
    seen = ~np.isnan(trace)
    hi = min(NYSTAGMUS_BAND_HZ[1], 0.45 * rate_hz)
    if t[-1] + 1 / rate_hz < MIN_TRACE_S or seen.sum() < 0.5 * len(trace) or hi <= NYSTAGMUS_BAND_HZ[0]:
        return {"present": None, "reason": f"needs at least {MIN_TRACE_S:g} s with gaze in half the frames"}
    x = np.interp(t, t[seen], trace[seen])
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    freqs, power = periodogram(x, rate_hz, window="hann", detrend=False)
    band = (freqs >= NYSTAGMUS_BAND_HZ[0]) & (freqs <= hi)
    k = int(np.flatnonzero(band)[np.argmax(power[band])])
    near = np.zeros_like(band)
    near[max(k - 1, 0):k + 2] = True  # the peak and its neighbours (the Hann window spreads a sine over 3 bins)
    above = freqs > 0.5
    total = float(power[above].sum())
    fraction = float(power[near & above].sum() / total) if total > 1e-12 else 0.0
    design = np.column_stack([np.sin(2 * np.pi * freqs[k] * t), np.cos(2 * np.pi * freqs[k] * t)])
    amplitude = float(np.hypot(*np.linalg.lstsq(design[seen], x[seen], rcond=None)[0]))  # gaps left out
    return {"present": bool(amplitude >= NYSTAGMUS_MIN_DEG and fraction >= NYSTAGMUS_MIN_POWER),
            "frequency_hz": round(float(freqs[k]), 2), "amplitude_deg": round(amplitude, 2),
            "power_fraction": round(fraction, 2)}


def summary_line(record: dict[str, Any]) -> str:
    """One table line for a clip record."""
    text = f"{record['measured_frames']}/{record['frames']} frames measured"
    if record.get("blinks"):
        b = record["blinks"]
        text += f", {b['count']} blink(s)"
    n = record.get("nystagmus") or {}
    if n.get("present") is not None:
        text += f", nystagmus {'yes' if n['present'] else 'no'} ({n['frequency_hz']:.1f} Hz, {n['amplitude_deg']:.1f} deg)"
    return text


def _commonest(series: list[dict[str, Any]]) -> str:
    reasons = [f["reason"] for f in series if f.get("reason")]
    return max(set(reasons), key=reasons.count) if reasons else "no frames"
