"""Synthetic ground truth for the analysis stage: real photos warped by a known amount around one eye.

Used by the invariance tests (tests/pipeline/test_analyse.py) and the accuracy report (scripts/eval_landmarks.py).
"""
from __future__ import annotations

import numpy as np
from digimask.pipeline.eyes.landmarks import EyeLandmarks
from scipy.ndimage import map_coordinates


def _warp(image: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    out = [map_coordinates(image[..., c].astype(float), [yy - dy, xx - dx], order=3, mode="nearest") for c in range(3)]
    return np.clip(np.dstack(out), 0, 255).astype(np.uint8)


def _ramp(t: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.clip((t - a) / (b - a), 0, 1)


def lid_moved(image: np.ndarray, eye: EyeLandmarks, k: float, lid: str) -> np.ndarray:
    """Move the lid margin by k px toward the iris centre, as a ptotic (or raised lower) lid does: the lid
    slides over a globe that stays where it is.

    Along each column, the lid (from its margin, with the margin's own blur and the lashes, out to 1.2
    iris radii beyond it) is translated by k, and the skin further out (1.2-2.4 radii) stretches to meet
    the unmoved brow or cheek; the globe is not deformed: the lid hides the band of it that it now covers
    (the translation starts OCCLUSION iris radii inside the new margin, so the edge keeps its profile).
    The iris, its centre and the canthi stay put, so the true MRD changes by exactly -k px, whatever the
    analysis under test makes of the image (k up to 0.3 radii). ``eye`` is the geometry the moved margin
    is defined by (the baseline analysis').
    """
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    c, r = eye.iris_center, eye.iris_radius
    sign = 1.0 if lid == "upper" else -1.0
    curve = eye.upper_lid if lid == "upper" else eye.lower_lid
    order = np.argsort(curve[:, 0])
    margin = sign * (c[1] - np.interp(xx[0], curve[order, 0], curve[order, 1]))  # px toward the lid, per column
    rel = (sign * (c[1] - yy) - margin[None]) / r  # radii beyond the margin
    hx = 1 - _ramp(np.abs(xx - c[0]), 1.6 * r, 0.45 * eye.width)
    moved = rel + k * hx / r  # radii beyond the moved margin
    g = _ramp(moved, -OCCLUSION - 0.1, -OCCLUSION) * (1 - _ramp(rel, 1.2, 2.4))
    return _warp(image, 0 * xx, sign * k * g * hx)


OCCLUSION = 0.2  # iris radii: the lid carries this much of the globe next to its margin (the edge's blur)


def iris_moved(image: np.ndarray, eye: EyeLandmarks, k: float) -> np.ndarray:
    """Translate the iris sideways by k px; the sclera between it and the canthi stretches, the canthi stay."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    c, r = eye.iris_center, eye.iris_radius
    hx = 1 - _ramp(np.abs(xx - c[0]), 1.1 * r, 0.45 * eye.width)
    gy = 1 - _ramp(np.abs(yy - c[1]), 1.3 * r, 2.0 * r)
    return _warp(image, k * hx * gy, 0 * xx)
