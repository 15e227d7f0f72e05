"""Fidelity metrics on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from digimask.evaluation.fidelity import (
    bland_altman,
    bootstrap_median_ci,
    cohens_kappa,
    compare,
    flatten,
    gaze_category,
    lid_category,
)


def test_cohens_kappa_hand_computed():
    a = ["ptosis", "ptosis", "normal", "normal", "retraction"]
    b = ["ptosis", "normal", "normal", "normal", "retraction"]
    # p_o = 0.8; p_e = .4*.2 + .4*.6 + .2*.2 = 0.36; kappa = 0.44 / 0.64
    assert cohens_kappa(a, b) == pytest.approx(0.6875)
    assert cohens_kappa(a, a) == 1.0
    assert cohens_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    assert math.isnan(cohens_kappa(["normal"] * 3, ["normal"] * 3))
    with pytest.raises(ValueError):
        cohens_kappa(["a"], [])


def test_bland_altman_hand_computed():
    ba = bland_altman([1, 2, 3, 4], [1.5, 2.5, 2.5, 4.5])  # differences .5 .5 -.5 .5
    assert (ba.n, ba.bias, ba.sd) == (4, pytest.approx(0.25), pytest.approx(0.5))
    assert ba.loa_low == pytest.approx(0.25 - 0.98) and ba.loa_high == pytest.approx(0.25 + 0.98)
    assert bland_altman([], []).n == 0


def test_categories_at_their_thresholds():
    assert [lid_category(x) for x in (1.0, 2.0, 2.1, 4.5, 5.5, 5.6)] == [
        "ptosis", "ptosis", "normal", "normal", "normal", "retraction"]
    assert gaze_category(3.0, -9.9) == "primary"
    assert gaze_category(-10.5, 0.0) == "deviated" == gaze_category(0.0, 12.0)


def _measurements(mrd1_right, mrd1_left, gaze_h=0.0, yaw=0.0):
    eye = lambda mrd1: {"mrd1_mm": mrd1, "mrd2_mm": 5.0, "gaze_h_deg": gaze_h, "gaze_v_deg": 0.0,
                        "fissure_height_mm": mrd1 + 5.0, "fissure_width_mm": 28.0, "closed": False}
    return {"scale": {"mm_per_px": 0.1}, "eyes": {"right": eye(mrd1_right), "left": eye(mrd1_left)},
            "binocular": {"horizontal_deg": 0.0, "vertical_deg": 0.0, "horizontal_pd": 0.0},
            "head_pose": {"yaw_deg": yaw, "pitch_deg": 0.0, "roll_deg": 0.0}}


def test_flatten_keeps_finite_measurements_only():
    flat = flatten(_measurements(4.0, float("nan")))
    assert flat["right.mrd1_mm"] == 4.0 and "left.mrd1_mm" not in flat
    assert flat["deviation_h_deg"] == 0.0 and flat["yaw_deg"] == 0.0
    assert "scale.mm_per_px" not in flat and "right.closed" not in flat
    assert flatten({"eyes": {}, "binocular": None, "head_pose": None}) == {}


def test_compare_pools_eyes_and_counts_failures():
    ref = [flatten(_measurements(4.0, 4.0)), flatten(_measurements(1.0, 4.0, yaw=10)),
           flatten(_measurements(4.0, 4.0)), flatten(_measurements(4.0, 4.0))]
    masked = [flatten(_measurements(4.5, 3.0)), flatten(_measurements(1.5, 4.0, yaw=12)), None, None]
    fid = compare(ref, masked, produced=[True, True, True, False])
    assert (fid.n_images, fid.n_not_produced, fid.n_not_measured, fid.n_failed) == (4, 1, 1, 2)
    mrd1 = fid.measurements["mrd1_mm"]  # errors .5, 1.0, .5, 0
    assert mrd1.n == 4 and mrd1.median_abs_error == pytest.approx(0.5)
    assert mrd1.p95_abs_error == pytest.approx(0.925)  # numpy linear interpolation
    assert mrd1.bland_altman.bias == pytest.approx(0.0)  # differences +.5, -1, +.5, 0
    assert fid.measurements["yaw_deg"].median_abs_error == pytest.approx(1.0)  # errors 0 and 2
    # lid categories: normal/normal, normal/normal(3.0), ptosis/ptosis(1.5 <= 2), normal/normal
    assert fid.category_agreement["lid"] == 1.0 and fid.kappa["lid"] == 1.0
    assert math.isnan(fid.kappa["gaze"])  # all primary on both sides: undefined
    assert fid.to_dict()["n_failed"] == 2 and "pairs" not in fid.to_dict()


def test_compare_restricted_to_named_measurements_rates_no_categories():
    ref = [{"right.dlib_eye_aspect": 0.30, "left.dlib_eye_aspect": 0.28, "right.mrd1_mm": 4.0}]
    test = [{"right.dlib_eye_aspect": 0.25, "left.dlib_eye_aspect": 0.28, "right.mrd1_mm": 1.0}]
    fid = compare(ref, test, [True], names=("dlib_eye_aspect",))
    assert list(fid.measurements) == ["dlib_eye_aspect"] and fid.kappa == {}
    assert fid.measurements["dlib_eye_aspect"].median_abs_error == pytest.approx(0.025)


def test_bootstrap_median_interval():
    assert bootstrap_median_ci(np.full(10, 0.3)) == (pytest.approx(0.3), pytest.approx(0.3))
    values = np.arange(101) / 100.0  # median 0.5
    low, high = bootstrap_median_ci(values)
    assert low < 0.5 < high and 0.3 < low and high < 0.7
    assert bootstrap_median_ci(values) == (low, high)  # reproducible
    assert all(math.isnan(x) for x in bootstrap_median_ci(np.array([])))
