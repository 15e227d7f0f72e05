"""Eye geometry fitted to the image's own edges, seeded by the landmark models.

The landmark regressors pull every eye toward an average one (docs/measurements.md: a lid lowered by
1.6 mm moved their lid by 0.3 mm). Here the landmarks only say where to look: the lid margins
(:mod:`~digimask.pipeline.eyes.lids`), the limbus (:mod:`~digimask.pipeline.eyes.limbus`) and the corneal
light reflex (:mod:`~digimask.pipeline.eyes.reflex`) are fitted to intensity edges found along short
profiles, with subpixel peaks and robust fits, and each says how well it fitted (``landmarks.FitQuality``).

Profiles are sampled in the eye's frame: ``u`` toward the patient's left, ``v`` up (image pixels), so
head roll does not change which way they run.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from digimask.pipeline.eyes.landmarks import EyeFit, EyeLandmarks, FitQuality
from digimask.pipeline.eyes.lids import CanthalFrame, fit_lids
from digimask.pipeline.eyes.limbus import fit_limbus
from digimask.pipeline.eyes.measure import eye_axes, lid_height
from digimask.pipeline.eyes.profiles import Channels
from digimask.pipeline.eyes.reflex import find_reflex
from scipy.ndimage import gaussian_filter1d, map_coordinates

MIN_FIT_RADIUS_PX = 5.0  # iris radius below which the edges are not fitted


def fit_eyes(image: np.ndarray, eyes: dict[str, EyeLandmarks], adopt: bool = True) -> dict[str, EyeLandmarks]:
    """The eyes with lid margins, limbus and reflex fitted to the image (seeds: the landmarks given).

    ``adopt=False`` keeps the landmark geometry (with the lower lid over the iris moved to the image's
    edge, :func:`refine_lower_lids`, as before) and only adds the corneal reflex found inside it.

    Order: the lids (around the seed iris), the limbus inside them, and the reflex inside that. A part that cannot be fitted keeps its seed and says why in
    ``eye.fit``; an iris under MIN_FIT_RADIUS_PX is not fitted at all (its limbus is a pixel or two of
    blur, and the fits there moved by up to 2 mm with rescaling: docs/measurements.md).
    """
    planes = Channels.of(image)
    u, v = eye_axes(eyes)
    if not adopt:
        out = {}
        for side, eye in refine_lower_lids(image, eyes).items():
            found = find_reflex(planes, eye.iris_center, eye.iris_radius, eye.upper_lid, eye.lower_lid,
                                CanthalFrame(eye, v))
            out[side] = eye if found is None else replace(eye, reflex=found.centre)
        return out
    out = {}
    for side, seed in eyes.items():
        if seed.iris_radius < MIN_FIT_RADIUS_PX:
            reason = f"iris {2 * seed.iris_radius:.0f} px across: too small to fit edges (need {2 * MIN_FIT_RADIUS_PX:.0f})"
            unfitted = FitQuality(False, reason=reason)
            out[side] = replace(seed, fit=EyeFit(unfitted, unfitted, unfitted), seed=replace(seed, fit=None, seed=None))
            continue
        upper, lower, upper_q, lower_q = fit_lids(planes, seed, seed.iris_center, seed.iris_radius, u, v)
        limbus = fit_limbus(planes, seed, upper, lower, u, v)
        reflex = find_reflex(planes, limbus.centre, limbus.radius, upper, lower, CanthalFrame(seed, v))
        out[side] = replace(
            seed,
            upper_lid=upper,
            lower_lid=lower,
            iris_center=limbus.centre,
            iris_radius=limbus.radius,
            iris_rim=limbus.rim(u, v),
            reflex=None if reflex is None else reflex.centre,
            fit=EyeFit(limbus.quality, upper_q, lower_q, None if reflex is None else reflex.quality, limbus.radius_sd),
            seed=replace(seed, fit=None, seed=None),
        )
    return out


# The landmark geometry's lower-lid step (adopted before the edge fits; docs/measurements.md): the lower
# lid over the iris moves to the centroid of the red channel's dark-to-light gradient along short profiles
# (units of the iris radius) within +/-0.35 r of the model's estimate, tapering to zero at the canthi.
LOWER_BAND = 0.35  # half-width of the search band around the model's lid, iris radii
LOWER_STEP = 0.05  # profile sample spacing, iris radii
LOWER_SIGMA = 0.12  # profile smoothing, iris radii
LOWER_COLUMNS = (-0.3, -0.15, 0.0, 0.15, 0.3)  # profile offsets along the eye's horizontal, iris radii


def _edge(red: np.ndarray, origin: np.ndarray, direction: np.ndarray, expect: float, r: float) -> float:
    """Centroid (px along ``direction`` from ``origin``) of the rising gradient within the band."""
    pad = 3 * LOWER_SIGMA * r
    t = np.arange(expect - LOWER_BAND * r - pad, expect + LOWER_BAND * r + pad + 1e-9, LOWER_STEP * r)
    p = origin[None] + t[:, None] * direction[None]
    profile = map_coordinates(red, [p[:, 1] - 0.5, p[:, 0] - 0.5], order=1, mode="nearest")
    grad = np.gradient(gaussian_filter1d(profile, LOWER_SIGMA / LOWER_STEP), t)
    keep = np.abs(t - expect) <= LOWER_BAND * r
    w = np.clip(grad[keep], 0.0, None)
    return float(expect) if w.sum() <= 0 else float((w * t[keep]).sum() / w.sum())


def _lower_lid_shift(red: np.ndarray, eye: EyeLandmarks, u: np.ndarray, v: np.ndarray) -> float:
    """Median offset (px along v, + up) of the image's lower-lid edge from the model's, near the iris."""
    c, r = eye.iris_center, eye.iris_radius
    down = []
    for a in LOWER_COLUMNS:
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
        out[side] = replace(eye, lower_lid=lower)
    return out
