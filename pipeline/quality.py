"""Quality gates: decide whether an image can be measured (and masked), with an admin-readable reason.

Each check raises :class:`QualityError` with a short reason (no PHI); the analysis stage turns it into
``Rejected`` so the node quarantines the image instead of emitting a wrong mask.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

MultiFacePolicy = Literal["largest", "reject"]


class QualityError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class QualityThresholds:
    multiple_faces: MultiFacePolicy = "largest"
    min_interocular_px: float = 32.0  # canthal-midpoint distance, face mode
    min_eye_width_px: float = 24.0  # canthus to canthus, close-up mode
    max_yaw_deg: float = 35.0
    max_pitch_deg: float = 30.0
    max_roll_deg: float = 35.0
    min_open_ratio: float = 0.12  # fissure height / fissure width below this: the eye is closed


def check_face_count(count: int, policy: MultiFacePolicy) -> None:
    if count == 0:
        raise QualityError("no face or eye found")
    if count > 1 and policy == "reject":
        raise QualityError(f"{count} faces found (policy: reject multiple faces)")


def check_face_size(interocular_px: float, t: QualityThresholds) -> None:
    if interocular_px < t.min_interocular_px:
        raise QualityError(
            f"face too small: {interocular_px:.0f} px between the eyes (minimum {t.min_interocular_px:.0f})"
        )


def check_eye_size(eye_width_px: float, t: QualityThresholds) -> None:
    if eye_width_px < t.min_eye_width_px:
        raise QualityError(f"eye too small: {eye_width_px:.0f} px wide (minimum {t.min_eye_width_px:.0f})")


def check_pose(yaw: float, pitch: float, roll: float, t: QualityThresholds) -> None:
    for name, value, limit in (
        ("yaw", yaw, t.max_yaw_deg), ("pitch", pitch, t.max_pitch_deg), ("roll", roll, t.max_roll_deg)
    ):
        if abs(value) > limit:
            raise QualityError(f"extreme pose: {name} {value:+.0f} deg (limit {limit:.0f})")


def open_ratio(fissure_height_px: float, fissure_width_px: float) -> float:
    return float(fissure_height_px / fissure_width_px) if fissure_width_px > 0 else 0.0


def check_eyes_open(ratios: Mapping[str, float], t: QualityThresholds) -> None:
    """Reject only when every visible eye is closed: one closed eye (complete ptosis) is a finding."""
    if ratios and all(not np.isfinite(r) or r < t.min_open_ratio for r in ratios.values()):
        raise QualityError("eyes closed")
