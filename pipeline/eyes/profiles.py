"""Intensity profiles for the edge fits (pipeline/eyes/lids.py, limbus.py, reflex.py): sampling at
continuous pixel coordinates, smoothing along the profile, subpixel peaks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from digimask.pipeline.imaging import LUMA_REC601
from scipy.ndimage import (
    binary_dilation,
    gaussian_filter1d,
    map_coordinates,
    white_tophat,
)

PROFILE_STEP_PX = 0.25  # sample spacing along a profile, image pixels
PROFILE_SIGMA_PX = 0.6  # smoothing along a profile (the photos' own blur is 1-2 px), image pixels
SIGMA_RADII = 0.04  # profile smoothing on larger eyes, iris radii
GLINT_SIZE = 0.5  # a glint is a bright spot smaller than this, iris radii (top-hat window)
GLINT_CONTRAST = 30.0  # grey levels above its surroundings


@dataclass(frozen=True)
class Channels:
    """The image as float planes for edge search: luma and red (skin is bright in red, the iris is not)."""

    luma: np.ndarray
    red: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> Channels:
        rgb = image[..., :3].astype(np.float32)
        return cls(rgb @ np.asarray(LUMA_REC601, np.float32), rgb[..., 0])


def sample(plane: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``plane`` at continuous pixel coordinates (..., 2) (a pixel's centre at +0.5)."""
    p = np.asarray(points, dtype=float)
    flat = p.reshape(-1, 2)
    values = map_coordinates(plane, [flat[:, 1] - 0.5, flat[:, 0] - 0.5], order=1, mode="nearest")
    return values.reshape(p.shape[:-1])


def profiles(
    plane: np.ndarray, origins: np.ndarray, directions: np.ndarray, t: np.ndarray, sigma_px: float = PROFILE_SIGMA_PX
) -> np.ndarray:
    """Smoothed intensity along rays: (n, len(t)) for ``origins`` (n, 2), unit ``directions`` (n, 2)."""
    points = origins[:, None, :] + t[None, :, None] * directions[:, None, :]
    step = float(t[1] - t[0]) if len(t) > 1 else PROFILE_STEP_PX
    return gaussian_filter1d(sample(plane, points), sigma_px / step, axis=1, mode="nearest")


def smoothing_px(radius: float) -> float:
    """Profile smoothing for an iris of ``radius`` px: PROFILE_SIGMA_PX, or SIGMA_RADII of the radius on a
    larger eye, so an enlarged photo is smoothed like the original (the edges scale with it)."""
    return max(PROFILE_SIGMA_PX, SIGMA_RADII * radius)


def subpixel_peak(values: np.ndarray, i: int) -> float:
    """Index of the parabola vertex through ``values[i-1:i+2]`` (``i`` itself at the ends)."""
    if i <= 0 or i >= len(values) - 1:
        return float(i)
    a, b, c = values[i - 1], values[i], values[i + 1]
    denom = a - 2 * b + c
    return float(i) if denom >= 0 else float(i + 0.5 * (a - c) / denom)


def glint_mask(luma: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Specular spots on the cornea (small bright spots within 1.2 radii: a white top-hat), grown by a pixel,
    as a boolean patch and its top-left (x, y) in the image."""
    h, w = luma.shape
    half = math.ceil(2.0 * radius) + 2
    x0, y0 = max(int(centre[0]) - half, 0), max(int(centre[1]) - half, 0)
    patch = luma[y0:min(int(centre[1]) + half + 1, h), x0:min(int(centre[0]) + half + 1, w)]
    if patch.size == 0:
        return np.zeros((1, 1), bool), (x0, y0)
    size = max(3, round(GLINT_SIZE * radius) | 1)
    hat = white_tophat(patch, size=size)
    lo, hi = np.percentile(patch, [5, 95])
    yy, xx = np.mgrid[0:patch.shape[0], 0:patch.shape[1]] + 0.5
    near = np.hypot(xx + x0 - centre[0], yy + y0 - centre[1]) <= 1.2 * radius
    spots = (hat > max(GLINT_CONTRAST, 0.25 * (hi - lo))) & (patch > np.median(patch)) & near
    return binary_dilation(spots, iterations=1), (x0, y0)


def in_mask(mask: tuple[np.ndarray, tuple[int, int]], points: np.ndarray) -> np.ndarray:
    """Whether each point (n, 2) falls on a True pixel of a (patch, top-left) mask."""
    patch, (x0, y0) = mask
    ix, iy = np.floor(points[:, 0] - x0).astype(int), np.floor(points[:, 1] - y0).astype(int)
    on = (ix >= 0) & (iy >= 0) & (ix < patch.shape[1]) & (iy < patch.shape[0])
    out = np.zeros(len(points), bool)
    out[on] = patch[iy[on], ix[on]]
    return out
