"""The lower-lid edge refinement on a drawn eye whose lid margin is known exactly."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.pipeline.eyes.edges import refine_lower_lids
from digimask.pipeline.eyes.landmarks import EyeLandmarks
from digimask.pipeline.eyes.measure import eye_axes, lid_height

C, R = np.array([100.0, 100.0]), 20.0
MRD2 = 14.0  # px, the drawn lower lid margin below the iris centre


def _lid(x: np.ndarray, depth: float) -> np.ndarray:
    """A lower lid through both canthi (x 40 and 160, y 101) that sits ``depth`` px below C at the iris."""
    return 101.0 + (depth - 1.0) * (1 - ((x - 100.0) / 60.0) ** 2)


def _drawn_eye() -> np.ndarray:
    """Red skin, white sclera, a dark iris; the lower lid margin at ``_lid(x, MRD2)``."""
    yy, xx = np.mgrid[0:200, 0:200] + 0.5
    image = np.empty((200, 200, 3), np.uint8)
    image[:] = (200, 130, 110)
    fissure = (yy > 90) & (yy < _lid(xx, MRD2)) & (np.abs(xx - 100) < 60)
    image[fissure] = (235, 235, 230)
    image[fissure & ((xx - C[0]) ** 2 + (yy - C[1]) ** 2 < R**2)] = (60, 45, 40)
    return image


def _eye(depth: float) -> EyeLandmarks:
    x = np.linspace(40.0, 160.0, 9)
    lower = np.column_stack([x, _lid(x, depth)])
    upper = np.column_stack([x, 101.0 - 12.0 * (1 - ((x - 100.0) / 60.0) ** 2)])
    return EyeLandmarks("right", upper, lower, upper[-1].copy(), upper[0].copy(), C.copy(), R)


def _mrd2(eye: EyeLandmarks) -> float:
    u, v = eye_axes({"right": eye})
    return -lid_height(eye.lower_lid, eye.iris_center, u, v)


@pytest.mark.parametrize("model_depth", [MRD2 - 4.0, MRD2 + 4.0])
def test_a_misplaced_lower_lid_moves_to_the_drawn_margin(model_depth: float) -> None:
    eye = refine_lower_lids(_drawn_eye(), {"right": _eye(model_depth)})["right"]
    assert _mrd2(eye) == pytest.approx(MRD2, abs=1.0)
    assert np.allclose(eye.lower_lid[[0, -1]], _eye(model_depth).lower_lid[[0, -1]])  # canthi stay
    assert np.array_equal(eye.upper_lid, _eye(model_depth).upper_lid)


def test_a_lid_on_the_margin_stays() -> None:
    eye = refine_lower_lids(_drawn_eye(), {"right": _eye(MRD2)})["right"]
    assert _mrd2(eye) == pytest.approx(MRD2, abs=0.5)
