"""Upper and lower lid margins fitted to the image's margin edges, from canthus to canthus.

Columns run across the opening in canthus-aligned coordinates (t: 0 at the lateral canthus, 1 at the
medial one; s: perpendicular, + up). On each column a profile across the seed lid gives an edge score
along s (smoothed, scaled to the iris so an enlarged photo scores alike):

* upper lid: going up, bright globe (sclera) or iris onto the dark lash line: minus the luma gradient
  (the lash line's top edge, dark to bright skin, has the other sign and scores nothing);
* lower lid: globe onto the lid going down, either sign of the luma gradient (the sclera is brighter
  than the lid, the iris darker), and over the iris the red channel's rise (the lid is bright in red).

The margin is the seed lid plus a smooth correction (a quartic in t that vanishes at the canthi)
chosen to maximise the mean edge score along it: one contour for the whole lid, in the spirit of
Daugman's integro-differential operator, so the columns agree on one edge (the lash line's lower
boundary, say) instead of each taking its own strongest. Scores are compressed, 2 s / (s + m) with m the
median column's best edge, so one dark lash or a glint's rim (masked anyway) cannot outvote the others.
The canthi stay the landmark model's.
"""
from __future__ import annotations

import numpy as np
from digimask.pipeline.eyes.landmarks import EyeLandmarks, FitQuality
from digimask.pipeline.eyes.profiles import (
    PROFILE_STEP_PX,
    Channels,
    glint_mask,
    in_mask,
    profiles,
    smoothing_px,
)

COLUMNS = np.linspace(0.1, 0.9, 25)  # column positions, fraction of the canthus-to-canthus span
BAND = 0.4  # search half-width around the seed lid, iris radii (at least MIN_BAND_PX)
MIN_BAND_PX = 2.0
MIN_COLUMNS = 5  # columns with an edge the contour can follow
MIN_SCORE = 0.35  # mean compressed edge score along the fitted contour below this: no margin edge found


class CanthalFrame:
    """Canthus-aligned coordinates of one eye: t along lateral -> medial canthus (0..1), s perpendicular
    (pixels, + toward the eye's up ``v``)."""

    def __init__(self, eye: EyeLandmarks, v: np.ndarray) -> None:
        self.origin = np.asarray(eye.lateral_canthus, float)
        axis = np.asarray(eye.medial_canthus, float) - self.origin
        self.length = float(max(np.linalg.norm(axis), 1e-6))
        self.e = axis / self.length
        n = np.array([-self.e[1], self.e[0]])
        self.n = n if n @ v >= 0 else -n

    def to_ts(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(points, float) - self.origin
        return d @ self.e / self.length, d @ self.n

    def to_image(self, t: np.ndarray, s: np.ndarray) -> np.ndarray:
        return self.origin + np.multiply.outer(t * self.length, self.e) + np.multiply.outer(s, self.n)

    def height(self, lid: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The lid polyline's s at ``t`` (NaN outside it)."""
        lt, ls = self.to_ts(lid)
        order = np.argsort(lt)
        return np.interp(t, lt[order], ls[order], left=np.nan, right=np.nan)


def _basis(t: np.ndarray) -> np.ndarray:
    """Corrections that vanish at the canthi: (1 - x^2) (1, x, x^2), x = 2t - 1 (a higher or lower apex,
    a lid peaked toward one canthus, a flatter or rounder lid)."""
    x = 2.0 * np.asarray(t) - 1.0
    return np.stack([np.ones_like(x), x, x * x], axis=-1) * (1.0 - x * x)[..., None]


def edge_scores(
    planes: Channels, frame: CanthalFrame, seed_s: np.ndarray, t: np.ndarray, upper: bool,
    iris_t: tuple[float, float], radius: float, glints: tuple[np.ndarray, tuple[int, int]],
    other_s: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the seed lid (the band, px) and per column the compressed edge score there (1 at the
    median column's best edge; 0 where there is no edge of the right sign, at glints, off the lid)."""
    band = max(BAND * radius, MIN_BAND_PX)
    steps = np.arange(-band, band + 1e-9, PROFILE_STEP_PX)
    ok = np.isfinite(seed_s)
    origins = frame.to_image(t, np.where(ok, seed_s, 0.0))
    dirs = np.broadcast_to(frame.n, origins.shape)
    sigma = smoothing_px(radius)
    pad = int(np.ceil(3 * sigma / PROFILE_STEP_PX))
    ext = np.arange(-pad, len(steps) + pad) * PROFILE_STEP_PX + steps[0]
    inner = slice(pad, pad + len(steps))
    grad_l = np.gradient(profiles(planes.luma, origins, dirs, ext, sigma), PROFILE_STEP_PX, axis=1)[:, inner]
    if upper:
        score = np.clip(-grad_l, 0, None)
    else:
        score = np.abs(grad_l)
        over_iris = (t >= iris_t[0]) & (t <= iris_t[1])
        if over_iris.any():
            grad_r = np.gradient(profiles(planes.red, origins[over_iris], dirs[over_iris], ext, sigma),
                                 PROFILE_STEP_PX, axis=1)[:, inner]
            score[over_iris] = np.maximum(score[over_iris], -grad_r)  # red rises going down, onto the lid
    points = frame.to_image(np.repeat(t, len(steps)), (np.where(ok, seed_s, 0.0)[:, None] + steps[None]).ravel())
    score[in_mask(glints, points).reshape(score.shape)] = 0.0
    score[~ok] = 0.0
    if other_s is not None:  # each lid's edges stay on its side of the opening (near the canthi both are close)
        mid = (seed_s + other_s)[:, None] / 2.0
        offset = np.where(ok, seed_s, 0.0)[:, None] + steps[None]
        score[(offset < mid) if upper else (offset > mid)] = 0.0
    # One scale for all columns (the typical column's best edge), compressed so that no column (one dark
    # lash, a glint's rim) outvotes the others, yet monotone so each column's peak stays where it is.
    peaks = score.max(axis=1)
    top = float(np.median(peaks[peaks > 0])) if (peaks > 0).any() else 1.0
    return steps, 2.0 * score / (score + top)


def fit_margin(
    planes: Channels, eye: EyeLandmarks, frame: CanthalFrame, seed: np.ndarray, upper: bool,
    iris_centre: np.ndarray, radius: float, other: np.ndarray | None = None,
) -> tuple[np.ndarray, FitQuality]:
    """One lid margin: points on the fitted curve at the seed points' positions along the canthal axis."""
    t = COLUMNS
    seed_s = frame.height(seed, t)
    ct, _ = frame.to_ts(iris_centre[None])
    half = radius / frame.length
    glints = glint_mask(planes.luma, iris_centre, radius)
    other_s = None if other is None else frame.height(other, t)
    steps, score = edge_scores(planes, frame, seed_s, t, upper, (ct[0] - half, ct[0] + half), radius, glints,
                               other_s)
    live = score.max(axis=1) > 0
    name = "upper" if upper else "lower"
    if live.sum() < MIN_COLUMNS:
        return seed.copy(), FitQuality(False, int(live.sum()), reason=f"{name} lid margin: {int(live.sum())} "
                                       f"columns with an edge (need {MIN_COLUMNS})")
    basis = _basis(t)[live]
    rows = score[live]
    band = steps[-1]

    def mean_score(c: np.ndarray) -> np.ndarray:
        """Mean score along the contours seed + basis @ c, for coefficient rows c (k, 3)."""
        x = (basis @ np.atleast_2d(c).T - steps[0]) / PROFILE_STEP_PX  # (columns, k), fractional index
        i = np.floor(x).astype(int)
        inside = (i >= 0) & (i < len(steps) - 1)
        i = np.clip(i, 0, len(steps) - 2)
        f = x - i
        col = np.arange(len(rows))[:, None]
        value = rows[col, i] * (1 - f) + rows[col, i + 1] * f
        return np.where(inside, value, 0.0).mean(axis=0)

    # coarse: apex and flattening on a grid over the band (the seed's error is mostly a too high or too
    # low, too flat or too round lid); then finer grids around the best, with the tilt too
    grid = np.arange(-band, band + 1e-9, 2 * PROFILE_STEP_PX)
    c0, c2 = (a.ravel() for a in np.meshgrid(grid, grid))
    candidates = np.column_stack([c0, np.zeros_like(c0), c2])
    values = mean_score(candidates)
    best = candidates[int(np.argmax(values))]
    for step in (2 * PROFILE_STEP_PX, PROFILE_STEP_PX, PROFILE_STEP_PX / 2.5):
        offsets = np.arange(-2, 3) * step
        local = best + np.stack(np.meshgrid(offsets, offsets, offsets), axis=-1).reshape(-1, 3)
        values = mean_score(local)
        best = local[int(np.argmax(values))]
    quality_score = float(values.max())
    if quality_score < MIN_SCORE:
        return seed.copy(), FitQuality(False, int(live.sum()), reason=f"{name} lid margin: no consistent edge "
                                       f"(mean score {quality_score:.2f}, need {MIN_SCORE})")
    # Scatter: each column's own peak near the contour (within a radius of the smoothing) against it.
    d = basis @ best
    near = []
    for j, row in enumerate(rows):
        window = np.abs(steps - d[j]) <= 2 * smoothing_px(radius)
        if window.any() and row[window].max() > 0.5:
            near.append(steps[window][int(np.argmax(row[window]))] - d[j])
    near = np.asarray(near)
    rms = float(np.sqrt(np.mean(near**2))) if near.size else float("nan")
    sd = float(max(rms, PROFILE_STEP_PX) / np.sqrt(max(near.size / 3.0, 1.0)))  # ~3 columns per smoothing width
    pt, ps = frame.to_ts(seed)
    fitted = frame.to_image(pt, ps + _basis(np.clip(pt, 0, 1)) @ best)
    fitted[[0, -1]] = seed[[0, -1]]  # the canthi stay
    return fitted, FitQuality(True, int(live.sum()), float(near.size / live.sum()), rms, float(live.mean()), sd)


def fit_lids(
    planes: Channels, eye: EyeLandmarks, iris_centre: np.ndarray, radius: float, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, FitQuality, FitQuality]:
    """Upper and lower margins of ``eye`` (seeded by its landmark lids), with their fit qualities."""
    frame = CanthalFrame(eye, v)
    seeds = np.asarray(eye.upper_lid, float), np.asarray(eye.lower_lid, float)
    upper, uq = fit_margin(planes, eye, frame, seeds[0], True, iris_centre, radius, seeds[1])
    lower, lq = fit_margin(planes, eye, frame, seeds[1], False, iris_centre, radius, seeds[0])
    return upper, lower, uq, lq
