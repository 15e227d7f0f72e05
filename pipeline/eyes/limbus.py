"""The limbus (iris-sclera boundary) located in the image, seeded by the iris landmarks.

The iris is a disc of one brightness on a globe of another, seen between the lids. Within the fitted lid
margins (less LID_CLEARANCE_PX, so lashes and the lids' shadow stay out) and clear of glints, the luma on
a half-pixel grid is fitted by a blurred disc, ``outside + (inside - outside) * S((r - |p - c|) / w)``
with S the logistic step: every pixel of the visible limbus arcs and of the iris beside them counts (the
integro-differential idea of Daugman, as a least-squares fit). The two brightnesses are solved linearly
for each disc (variable projection); position and edge width by scipy ``least_squares`` with a soft-L1
loss, so a lash or a glint left in does not pull the disc.

What the fit moves is the centre along the eye's horizontal axis ``u``: the lids hide the top and bottom
of the limbus, and on photos with irises of 4-13 px radius the visible side arcs did not fix the radius
or the vertical centre (docs/measurements.md: they moved by up to 0.5 mm and 2.6 mm with rescaling and
rotation, against 0.08 and 0.19 mm for the landmark model's), so those stay the landmark model's.
Quality: RMS residual (grey levels), inlier share, the share of the circle seen between the lids, and
the horizontal centre's 1 SD from the fit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from digimask.pipeline.eyes.landmarks import EyeLandmarks, FitQuality
from digimask.pipeline.eyes.lids import CanthalFrame
from digimask.pipeline.eyes.profiles import Channels, glint_mask, in_mask, sample
from scipy.optimize import least_squares

GRID_PX = 0.5  # sample spacing of the fitted region, image pixels
REACH = 1.8  # the region: within this many radii of the seed centre
LID_CLEARANCE_PX = 1.0  # samples lie this far inside both lid margins
EDGE_WIDTH_PX = (0.3, 3.0)  # bounds of the fitted blur of the limbus edge
MIN_SAMPLES = 20
MIN_CONTRAST = 12.0  # grey levels between iris and sclera
MIN_COVERAGE = 0.2  # share of the circle between the lids
MAX_MOVE = 0.5  # radii from the seed


@dataclass(frozen=True)
class Limbus:
    centre: np.ndarray  # (2,) px
    radius: float  # px
    radius_sd: float  # px, 1 SD (NaN: the seed's radius, not fitted)
    quality: FitQuality

    def rim(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Points on the circle at +u, +v, -u, -v."""
        return self.centre + self.radius * np.array([u, v, -u, -v])


def fissure_samples(
    planes: Channels, centre: np.ndarray, radius: float, upper: np.ndarray, lower: np.ndarray, frame: CanthalFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Grid points (n, 2) between the lids near the iris, clear of glints, and their luma."""
    n = int(np.ceil(REACH * radius / GRID_PX))
    offsets = np.arange(-n, n + 1) * GRID_PX
    grid = (centre + np.stack(np.meshgrid(offsets, offsets), axis=-1)).reshape(-1, 2)
    t, s = frame.to_ts(grid)
    keep = (s <= frame.height(upper, t) - LID_CLEARANCE_PX) & (s >= frame.height(lower, t) + LID_CLEARANCE_PX)
    keep &= ~in_mask(glint_mask(planes.luma, centre, radius), grid)
    return grid[keep], sample(planes.luma, grid[keep])


def disc_residuals(points: np.ndarray, values: np.ndarray, centre: np.ndarray, radius: float,
                   width: float) -> tuple[np.ndarray, np.ndarray]:
    """Residuals of the best two-brightness blurred disc, and the two brightnesses (outside, inside)."""
    step = 1.0 / (1.0 + np.exp(-np.clip((radius - np.linalg.norm(points - centre, axis=1)) / width, -30, 30)))
    # least squares for the two brightnesses: the 2x2 normal equations of [1 - step, step]
    a, b = 1.0 - step, step
    aa, ab, bb = a @ a, a @ b, b @ b
    det = aa * bb - ab * ab
    if det <= 1e-9 * max(aa * bb, 1e-12):
        coef = np.full(2, float(values.mean()))
    else:
        ya, yb = a @ values, b @ values
        coef = np.array([(bb * ya - ab * yb) / det, (aa * yb - ab * ya) / det])
    return a * coef[0] + b * coef[1] - values, coef


def fit_limbus(
    planes: Channels, eye: EyeLandmarks, upper: np.ndarray, lower: np.ndarray, u: np.ndarray, v: np.ndarray
) -> Limbus:
    """The limbus of ``eye`` (seed: its iris landmarks) inside the lid margins ``upper``/``lower``: the
    seed's circle moved along ``u`` to where the image puts it."""
    c0, r0 = np.asarray(eye.iris_center, float), float(eye.iris_radius)
    frame = CanthalFrame(eye, v)
    points, values = fissure_samples(planes, c0, r0, upper, lower, frame)

    def seed(reason: str) -> Limbus:
        return Limbus(c0, r0, float("nan"), FitQuality(False, len(points), reason=f"limbus: {reason}"))

    if len(points) < MIN_SAMPLES:
        return seed(f"{len(points)} samples between the lids (need {MIN_SAMPLES})")
    scale = max(float(np.ptp(np.percentile(values, [5, 95]))) / 10.0, 1.0)  # where soft-L1 turns linear

    def residuals(p: np.ndarray) -> np.ndarray:
        return disc_residuals(points, values, c0 + p[0] * u, r0, p[1])[0]

    res = least_squares(residuals, np.array([0.0, 1.0]), loss="soft_l1", f_scale=scale, xtol=1e-3, ftol=1e-4,
                        bounds=([-MAX_MOVE * r0, EDGE_WIDTH_PX[0]], [MAX_MOVE * r0, EDGE_WIDTH_PX[1]]))
    centre = c0 + res.x[0] * u
    r, (outside, inside) = disc_residuals(points, values, centre, r0, res.x[1])
    rms = float(np.sqrt(np.mean(r**2)))
    a = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    rt, rs = frame.to_ts(centre + r0 * np.column_stack([np.cos(a), np.sin(a)]))
    coverage = float(np.mean((rs <= frame.height(upper, rt)) & (rs >= frame.height(lower, rt))))
    if abs(outside - inside) < MIN_CONTRAST:
        return seed(f"iris and sclera differ by {abs(outside - inside):.0f} grey levels (need {MIN_CONTRAST:.0f})")
    if coverage < MIN_COVERAGE:
        return seed(f"{100 * coverage:.0f} % of the circle seen between the lids (need {100 * MIN_COVERAGE:.0f} %)")
    if np.any(np.isclose(abs(res.x[0]), MAX_MOVE * r0)):
        return seed(f"the image's iris lies more than {MAX_MOVE} radii from the landmarks'")
    cov = np.linalg.pinv(res.jac.T @ res.jac) * rms**2
    quality = FitQuality(True, len(points), float(np.mean(np.abs(r) <= 3 * scale)), rms, coverage,
                         float(np.sqrt(max(cov[0, 0], 0.0))))
    return Limbus(centre, r0, float("nan"), quality)
