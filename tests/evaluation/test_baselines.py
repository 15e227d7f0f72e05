"""Baseline maskers on a real face photo."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.evaluation.baselines import (
    BASELINES,
    EyeBarMasker,
    EyeCropMasker,
    OriginalMasker,
)
from digimask.evaluation.landmarks import (
    EYES,
    detect_face,
    eye_openings,
    periocular_box,
)
from digimask.pipeline.errors import MaskingFailed
from pydicom.dataset import Dataset


@pytest.fixture(scope="module")
def face(astronaut):
    return detect_face(astronaut)


def test_original_is_an_unchanged_copy(astronaut):
    out = OriginalMasker().mask(astronaut, Dataset()).pixels
    assert out is not astronaut and np.array_equal(out, astronaut)


def test_eye_bar_covers_the_eyes_only(astronaut, face):
    out = EyeBarMasker().mask(astronaut, Dataset()).pixels
    assert out.shape == astronaut.shape
    for x, y in face.points68[EYES].round().astype(int):
        assert not out[y, x].any(), "an eye landmark is not under the bar"
    mouth = face.points68[48:68].round().astype(int)
    assert all(np.array_equal(out[y, x], astronaut[y, x]) for x, y in mouth)


def test_eye_crop_keeps_the_eye_region_only(astronaut, face):
    out = EyeCropMasker().mask(astronaut, Dataset()).pixels
    left, top, right, bottom = periocular_box(face.points68, astronaut.shape)
    assert np.array_equal(out[top:bottom, left:right], astronaut[top:bottom, left:right])
    outside = out.copy()
    outside[top:bottom, left:right] = 0
    assert not outside.any()
    for x, y in face.points68[EYES].round().astype(int):
        assert left <= x < right and top <= y < bottom


@pytest.mark.parametrize("name", ["eye_bar", "eye_crop"])
def test_no_face_is_a_masking_failure(name):
    with pytest.raises(MaskingFailed):
        BASELINES[name]().mask(np.full((200, 200, 3), 127, np.uint8), Dataset())


def test_eye_openings_hand_computed_and_on_a_real_face(face):
    points = np.zeros((68, 2))
    # right eye: corners 4 apart, lid-to-lid heights 1 and 2 -> (1 + 2) / (2 * 4)
    points[36:42] = [(0, 0), (1, -0.5), (3, -1), (4, 0), (3, 1), (1, 0.5)]
    points[42:48] = [(10, 0), (11, -1), (13, -1), (14, 4), (13, 1), (11, 1)]
    got = eye_openings(points)
    assert got["right.dlib_eye_aspect"] == pytest.approx(3 / 8)
    assert got["dlib_canthal_tilt_deg"] == pytest.approx(np.degrees(np.arctan2(4, 14)))
    assert "right.dlib_fissure_height_mm" not in got
    assert eye_openings(points, mm_per_px=0.2)["right.dlib_fissure_height_mm"] == pytest.approx(1.5 * 0.2)
    real = eye_openings(face.points68)
    assert 0.15 < real["right.dlib_eye_aspect"] < 0.45 and 0.15 < real["left.dlib_eye_aspect"] < 0.45
