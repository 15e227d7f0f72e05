"""Which frames of a clip have their lids shut: one rule for the measurement and for the mask's drawing.

The landmark models read shut lids as a narrow opening (on ``WolfgangLanger_Pexels.mp4`` 3-5 mm where a
3 s closure has the lids together, docs/digital_mask.md), so the fissure height alone does not tell a shut eye
from a squint. Within a clip the person is the same and the scale the same: a frame is shut when the
analysis says every visible eye is closed, or when its mean fissure height is below
:data:`CLOSED_FRACTION` of the clip's median over its measured frames (a lid that has not quite met, as
the models read it). A clip whose measured frames are shut for more than half its length has a shut
median: there only the analysis' own verdict finds them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CLOSED_FRACTION = 0.5
UNMEASURED = (float("nan"), False)


def opening(eyes: Mapping[str, Mapping[str, Any]]) -> tuple[float, bool]:
    """A frame's mean fissure height over its measured eyes (``fissure_height_mm`` of each) and whether the
    analysis found them all ``closed``: what :func:`shut_frames` decides by; :data:`UNMEASURED` without eyes."""
    if not eyes:
        return UNMEASURED
    return (float(np.mean([e["fissure_height_mm"] for e in eyes.values()])),
            all(bool(e["closed"]) for e in eyes.values()))


def shut_frames(heights_mm: Sequence[float], closed: Sequence[bool]) -> np.ndarray:
    """Per frame: shut or not. ``heights_mm``: each frame's mean fissure height over its measured eyes
    (NaN where the frame was not measured: never shut by height); ``closed``: the analysis's own verdict
    that every visible eye of the frame is closed."""
    heights = np.asarray(heights_mm, np.float64)
    measured = heights[np.isfinite(heights)]
    shut = np.asarray(closed, bool).copy()
    if measured.size:
        with np.errstate(invalid="ignore"):
            shut |= heights < CLOSED_FRACTION * float(np.median(measured))
    return shut
