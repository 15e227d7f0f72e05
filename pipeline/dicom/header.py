"""What the analysis reads from a header: the pixel spacing and the eye an image shows."""
from __future__ import annotations

import logging

from digimask.pipeline.eyes.landmarks import Side
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)


def pixel_spacing_mm(ds: Dataset) -> float | None:
    """Mean of PixelSpacing's row and column spacing (mm in the patient), or None when absent or invalid.

    ImagerPixelSpacing is not used: for a camera it is the spacing at the sensor, not at the eye.
    """
    try:
        rows, cols = (float(v) for v in ds.get("PixelSpacing") or ())
    except (TypeError, ValueError):
        return None
    if rows <= 0 or cols <= 0:
        return None
    if abs(rows - cols) > 0.01 * rows:
        log.warning("non-square pixels (%.4g x %.4g mm); using their mean", rows, cols)
    return (rows + cols) / 2


def laterality(ds: Dataset) -> Side | None:
    """The eye an image shows, from ImageLaterality (R/L), for a close-up of one eye."""
    return {"R": "right", "L": "left"}.get(str(ds.get("ImageLaterality", "")).upper())
