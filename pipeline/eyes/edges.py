"""Classical image-edge refinement of the lower lid margin found by the eye model.

The eye models regress toward an average eye (docs/measurements.md): a raised lower lid moves their lid
by only 9-20 % of the true change. This moves the lower lid over the iris to the image's own edge: along
short vertical intensity profiles (in the eye's frame, in units of the iris radius, so image scale and
roll do not matter) around the model's estimate, to the centroid of the downward dark-to-light gradient
(dark iris to the bright, red lower lid). The red channel is used: skin is bright in it, the iris is not.
Upper lid and iris centre are left to the model: there, lashes and catch-lights sit on the same profile
and the same rule made the known-warp figures worse (docs/measurements.md).
"""
from __future__ import annotations

import numpy as np
from digimask.pipeline.eyes.landmarks import EyeLandmarks
from digimask.pipeline.eyes.measure import eye_axes, lid_height
from scipy.ndimage import gaussian_filter1d, map_coordinates

BAND = 0.35  # half-width of the search band around the model's lid, iris radii
STEP = 0.05  # profile sample spacing, iris radii
SIGMA = 0.12  # profile smoothing, iris radii
COLUMNS = (-0.3, -0.15, 0.0, 0.15, 0.3)  # profile offsets along the eye's horizontal, iris radii


def _edge(red: np.ndarray, origin: np.ndarray, direction: np.ndarray, expect: float, r: float) -> float:
    """Centroid (px along ``direction`` from ``origin``) of the rising gradient within the band."""
    pad = 3 * SIGMA * r
    t = np.arange(expect - BAND * r - pad, expect + BAND * r + pad + 1e-9, STEP * r)
    p = origin[None] + t[:, None] * direction[None]
    profile = map_coordinates(red, [p[:, 1] - 0.5, p[:, 0] - 0.5], order=1, mode="nearest")
    grad = np.gradient(gaussian_filter1d(profile, SIGMA / STEP), t)
    keep = np.abs(t - expect) <= BAND * r
    w = np.clip(grad[keep], 0.0, None)
    return float(expect) if w.sum() <= 0 else float((w * t[keep]).sum() / w.sum())


def _lower_lid_shift(red: np.ndarray, eye: EyeLandmarks, u: np.ndarray, v: np.ndarray) -> float:
    """Median offset (px along v, + up) of the image's lower-lid edge from the model's, near the iris."""
    c, r = eye.iris_center, eye.iris_radius
    down = []
    for a in COLUMNS:
        o = c + a * r * u
        h = -lid_height(eye.lower_lid, o, u, v)  # depth of the model's lid below o
        if np.isfinite(h):
            down.append(_edge(red, o, -v, h, r) - h)
    return -float(np.median(down)) if down else 0.0


def _moved(lid: np.ndarray, c: np.ndarray, r: float, u: np.ndarray, v: np.ndarray, shift: float) -> np.ndarray:
    """``lid`` moved by ``shift`` along v over the iris, tapering (cosine) to zero at the canthi."""
    a = np.abs((lid - c) @ u)
    reach = max(float(a.max()), 1.5 * r)
    w = np.where(a <= r, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip((a - r) / (reach - r), 0, 1))))
    w[[0, -1]] = 0.0  # the canthi stay
    return lid + (w * shift)[:, None] * v[None]


def refine_lower_lids(image: np.ndarray, eyes: dict[str, EyeLandmarks]) -> dict[str, EyeLandmarks]:
    """The eyes with the lower lid margin over the iris moved to the image's edge."""
    red = image[..., 0].astype(float)
    u, v = eye_axes(eyes)
    out = {}
    for side, eye in eyes.items():
        lower = _moved(eye.lower_lid, eye.iris_center, eye.iris_radius, u, v, _lower_lid_shift(red, eye, u, v))
        out[side] = EyeLandmarks(side, eye.upper_lid, lower, eye.medial_canthus, eye.lateral_canthus,
                                 eye.iris_center, eye.iris_radius, eye.iris_rim)
    return out
