"""Quality gates: decide whether an image can be measured (and masked), with an admin-readable reason.

Each check raises :class:`~digimask.pipeline.errors.Rejected` with a short reason (no PHI), so the node
quarantines the image instead of emitting a wrong mask.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from digimask.config.settings import MultiFacePolicy
from digimask.pipeline.errors import Rejected
from digimask.pipeline.eyes.landmarks import EyeLandmarks
from digimask.pipeline.imaging import LUMA_REC601
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class QualityThresholds:
    multiple_faces: MultiFacePolicy = "largest"
    min_interocular_px: float = 32.0  # canthal-midpoint distance, face mode
    min_eye_width_px: float = 24.0  # canthus to canthus, close-up mode
    max_yaw_deg: float = 35.0
    max_pitch_deg: float = 30.0
    max_roll_deg: float = 35.0
    min_open_ratio: float = 0.12  # fissure height / fissure width below this: the eye is closed
    min_eye_spread: float = 15.0  # grey levels; a flatter eye region is covered (see eye_spread)
    require_fit: bool = False  # fitted geometry only: reject when no visible eye's limbus and lids were fitted


def check_face_count(count: int, policy: MultiFacePolicy) -> None:
    if count == 0:
        raise Rejected("no face or eye found", "no_face")
    if count > 1 and policy == "reject":
        raise Rejected(f"{count} faces found (policy: reject multiple faces)", "multiple_faces")


def check_face_size(interocular_px: float, t: QualityThresholds) -> None:
    if interocular_px < t.min_interocular_px:
        raise Rejected(
            f"face too small: {interocular_px:.0f} px between the eyes (minimum {t.min_interocular_px:.0f})",
            "too_small",
        )


def check_eye_size(eye_width_px: float, t: QualityThresholds) -> None:
    if eye_width_px < t.min_eye_width_px:
        raise Rejected(f"eye too small: {eye_width_px:.0f} px wide (minimum {t.min_eye_width_px:.0f})", "too_small")


def check_pose(yaw: float, pitch: float, roll: float, t: QualityThresholds) -> None:
    for name, value, limit in (
        ("yaw", yaw, t.max_yaw_deg), ("pitch", pitch, t.max_pitch_deg), ("roll", roll, t.max_roll_deg)
    ):
        if abs(value) > limit:
            raise Rejected(f"extreme pose: {name} {value:+.0f} deg (limit {limit:.0f})", "extreme_pose")


def open_ratio(fissure_height_px: float, fissure_width_px: float) -> float:
    return float(fissure_height_px / fissure_width_px) if fissure_width_px > 0 else 0.0


def check_eyes_open(ratios: Mapping[str, float], t: QualityThresholds) -> None:
    """Reject only when every visible eye is closed: one closed eye (complete ptosis) is a finding."""
    if ratios and all(not np.isfinite(r) or r < t.min_open_ratio for r in ratios.values()):
        raise Rejected("eyes closed", "eyes_closed")


def eye_spread(image: np.ndarray, eye: EyeLandmarks) -> float:
    """How much a visible eye's region varies: 5th-95th percentile grey-level spread, the lower of two regions.

    The regions are the palpebral fissure (sclera and iris; skipped when too small to read, i.e. a closed
    eye) and a box one eye width long and half as high around the canthal midpoint (lids and lashes). A bar
    or patch drawn over the eye makes them flat whatever the eye model invents there.
    """
    w = max(eye.width, 1.0)
    centre = (eye.lateral_canthus + eye.medial_canthus) / 2
    x0, y0 = np.maximum(np.floor(centre - w), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(centre + w) + 1, image.shape[1::-1]).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    crop = image[y0:y1, x0:x1, :3].astype(np.float32)
    grey = crop @ np.array(LUMA_REC601, np.float32)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    u = (eye.medial_canthus - eye.lateral_canthus) / w
    dx, dy = xs - centre[0], ys - centre[1]
    box = (np.abs(dx * u[0] + dy * u[1]) <= 0.5 * w) & (np.abs(dy * u[0] - dx * u[1]) <= 0.25 * w)
    outline = np.vstack([eye.upper_lid, eye.lower_lid[::-1]]) - (x0, y0)
    canvas = Image.new("1", (x1 - x0, y1 - y0))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in outline], fill=1)
    fissure = np.asarray(canvas, dtype=bool)

    def spread(mask: np.ndarray) -> float:
        values = grey[mask]
        return float(np.ptp(np.percentile(values, [5, 95]))) if values.size >= 10 else np.inf

    value = min(spread(box), spread(fissure))
    return 0.0 if np.isinf(value) else value


def occluded_eyes(spreads: Mapping[str, float], t: QualityThresholds) -> list[str]:
    """The sides whose eye region is flat (covered); reject when no eye is left visible."""
    hidden = [side for side, value in spreads.items() if value < t.min_eye_spread]
    if spreads and len(hidden) == len(spreads):
        raise Rejected(f"{'eyes' if len(spreads) > 1 else 'eye'} not visible (occluded)", "occluded")
    return hidden


def check_fitted(eyes: Mapping[str, EyeLandmarks], t: QualityThresholds) -> None:
    """With ``require_fit``, reject when no eye has its limbus and both lid margins fitted to the image (the
    reason names the first part that failed), instead of measuring the landmark models' guess."""
    if not t.require_fit:
        return
    reasons = []
    for eye in eyes.values():
        if eye.fit is None:
            reasons.append("not fitted")
            continue
        failed = [q.reason for q in (eye.fit.limbus, eye.fit.upper_lid, eye.fit.lower_lid) if not q.ok]
        if not failed:
            return
        reasons.append(failed[0])
    raise Rejected(f"eye edges not found: {reasons[0] if reasons else 'no eye'}", "edges_not_found")
