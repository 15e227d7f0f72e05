"""The corneal light reflex: a small near-saturated spot inside the limbus (flash photos).

The brightest spot within REACH limbus radii of the limbus centre (and inside the lids) counts as a
reflex only if it is brighter than the sclera beside the iris and stands well above the iris, and if it
is compact (at most MAX_AREA of the iris disc). Its position is the centroid of the spot's pixels above
half-way between the iris and the peak, weighted by how far above, on a quarter-pixel grid. With two
lights (two spots), the stronger one is taken.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from digimask.pipeline.eyes.landmarks import FitQuality
from digimask.pipeline.eyes.lids import CanthalFrame
from digimask.pipeline.eyes.profiles import Channels, sample
from scipy.ndimage import label

REACH = 0.8  # search disc, limbus radii
GRID_PX = 0.25
MIN_CONTRAST = 50.0  # grey levels above the iris median
MAX_AREA = 0.2  # of the iris disc


@dataclass(frozen=True)
class Reflex:
    centre: np.ndarray
    quality: FitQuality


def find_reflex(
    planes: Channels, centre: np.ndarray, radius: float, upper: np.ndarray, lower: np.ndarray,
    frame: CanthalFrame,
) -> Reflex | None:
    """The reflex inside the limbus circle (``centre``, ``radius``), or None when there is none."""
    n = int(np.ceil(REACH * radius / GRID_PX))
    offsets = np.arange(-n, n + 1) * GRID_PX
    grid = centre + np.stack(np.meshgrid(offsets, offsets), axis=-1)  # (m, m, 2), x then y
    luma = sample(planes.luma, grid)
    t, s = frame.to_ts(grid.reshape(-1, 2))
    inside_lids = ((s < frame.height(upper, t)) & (s > frame.height(lower, t))).reshape(luma.shape)
    disc = (np.hypot(*(grid - centre).transpose(2, 0, 1)) <= REACH * radius) & inside_lids
    if disc.sum() < 4:
        return None
    iris = float(np.median(luma[disc]))
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = centre + 1.3 * radius * np.column_stack([np.cos(angles), np.sin(angles)])
    rt, rs = frame.to_ts(ring)
    on_globe = (rs < frame.height(upper, rt)) & (rs > frame.height(lower, rt))
    sclera = float(np.median(sample(planes.luma, ring[on_globe]))) if on_globe.any() else iris
    peak = float(luma[disc].max())
    if peak - iris < MIN_CONTRAST or peak <= sclera:
        return None
    level = (iris + peak) / 2
    blobs, count = label(disc & (luma > level))
    best, weight = None, 0.0
    for k in range(1, count + 1):
        member = blobs == k
        w = float((luma[member] - level).sum())
        if w > weight:
            best, weight = member, w
    area = best.sum() * GRID_PX**2
    if area > MAX_AREA * np.pi * radius**2:
        return None
    wts = (luma - level)[best]
    c = (grid[best] * wts[:, None]).sum(axis=0) / wts.sum()
    sd = float(max(0.1, 0.5 / np.sqrt(max(area, 1.0))))  # half a pixel over the spot's pixel count
    return Reflex(c, FitQuality(True, int(best.sum()), 1.0, float("nan"), 1.0, sd))
