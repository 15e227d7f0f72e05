"""``evaluate`` on a small real-photo corpus: numbers with known answers."""
from __future__ import annotations

import importlib.util

import pytest
from digimask.evaluation.run import available_maskers, build_masker, chance_upper_bound
from PIL import Image

REQUIRED = ("rank1_mask_to_original", "rank1_mask_to_mask", "verification_rate", "auc", "chance_rank1",
            "n_images", "n_failed", "measurements")


def test_every_masker_reports_the_required_numbers(evaluated, masker_specs):
    _, results = evaluated
    assert results["corpus"]["n_images"] == 6 and results["corpus"]["n_identities"] == 2
    assert list(results["maskers"]) == masker_specs
    for r in results["maskers"].values():
        assert all(key in r for key in REQUIRED)
        assert r["n_images"] == 6
        assert r["chance_rank1"] == 0.5 and r["chance_rank1_mask_to_mask"] == 0.5


def test_the_original_is_fully_identifiable(evaluated):
    r = evaluated[1]["maskers"]["original"]
    assert r["rank1_mask_to_original"] == 1.0
    assert r["rank1_mask_to_mask"] == 1.0  # mirrored and cropped copies of the same photo match
    assert r["rank1_mask_to_mask_other_sessions"] == 1.0  # no sittings named: every photo is its own
    assert r["rank1_mask_to_original_other_sessions"] == 1.0  # the other copies of the photo match
    assert r["rank1_periocular"] == 1.0
    assert r["verification_rate"] == 1.0 and r["false_match_rate"] == 0.0 and r["auc"] == 1.0
    assert r["face_detected_rate"] == 1.0 and r["n_not_produced"] == 0


def test_a_blank_image_is_at_chance(evaluated):
    r = evaluated[1]["maskers"]["blank"]
    assert r["face_detected_rate"] == 0.0
    assert r["rank1_mask_to_original"] == r["chance_rank1"]
    assert r["rank1_mask_to_mask"] == r["chance_rank1_mask_to_mask"]
    assert r["auc"] == 0.5 and r["attacks"]["mask_to_mask"]["auc"] == 0.5
    assert r["verification_rate"] == r["false_match_rate"]


def test_independent_check_is_exact_for_the_original_and_impossible_on_blank(evaluated):
    original, blank = (evaluated[1]["maskers"][m]["independent_check"] for m in ("original", "blank"))
    assert original["n_failed"] == 0 and original["measurements"]["dlib_eye_aspect"]["n"] == 12
    assert original["measurements"]["dlib_eye_aspect"]["p95_abs_error"] == 0.0
    assert blank["n_failed"] == blank["n_images"] == 6
    if importlib.util.find_spec("digimask.pipeline.eyes.analyse") is not None:  # it gives the mm scale
        mm = original["measurements"]["dlib_fissure_height_mm"]
        assert mm["n"] > 0 and mm["p95_abs_error"] == 0.0


def test_eye_crop_is_produced_for_every_photo(evaluated):
    r = evaluated[1]["maskers"]["eye_crop"]
    assert r["n_not_produced"] == 0 and r["face_detected_rate"] == 0.0


@pytest.mark.skipif(importlib.util.find_spec("digimask.pipeline.eyes.analyse") is None,
                    reason="the analysis stage is not installed")
def test_fidelity_of_the_original_is_exact_and_blank_is_unmeasurable(evaluated):
    results = evaluated[1]
    original, blank = results["maskers"]["original"], results["maskers"]["blank"]
    assert original["fidelity"]["n_failed"] == 0
    measured = {m: s for m, s in original["measurements"].items() if s["n"]}
    assert "mrd1_mm" in measured and "gaze_h_deg" in measured
    assert all(s["median_abs_error"] == 0.0 and s["p95_abs_error"] == 0.0 for s in measured.values())
    n = blank["fidelity"]["n_images"]
    assert n > 0 and blank["n_failed"] == n


def test_masker_specs():
    assert build_masker("blur:sigma_fraction=0.05").sigma_fraction == 0.05
    assert build_masker("pixelate:blocks=8").blocks == 8
    assert build_masker("eye_bar:height=0.3").height == 0.3
    with pytest.raises(KeyError):
        build_masker("no_such_masker")
    assert {"original", "blank", "eye_bar", "eye_crop"} <= set(available_maskers())


def test_a_corpus_without_faces_exits_1(tmp_path, run_command):
    for name in ("a", "b"):
        (tmp_path / "corpus" / name).mkdir(parents=True)
        Image.new("RGB", (64, 64), "grey").save(tmp_path / "corpus" / name / "x.png")
    argv = ["evaluate", str(tmp_path / "corpus"), "-o", str(tmp_path / "r"), "--no-progress", "--maskers", "blank"]
    assert run_command(argv) == 1
    assert not (tmp_path / "r" / "results.json").exists()


def test_bad_arguments_exit_2(tmp_path, evaluated, run_command):
    assert run_command(["evaluate", str(tmp_path), "-o", str(tmp_path / "r")]) == 2  # empty corpus
    corpus = evaluated[0].parent / "corpus"
    assert run_command(["evaluate", str(corpus), "-o", str(tmp_path / "r"), "--maskers", "nope"]) == 2
    assert run_command(["evaluate", str(corpus), "-o", str(tmp_path / "r"), "--maskers", "blur:x"]) == 2


def test_targets(evaluated):
    original, blank = (evaluated[1]["maskers"][m]["targets"] for m in ("original", "blank"))
    assert original["rank1_mask_to_original_at_chance"] is False
    assert original["verification_rate_at_most_1pct"] is False
    assert blank["rank1_mask_to_original_at_chance"] is True and blank["rank1_mask_to_mask_at_chance"] is True
    assert blank["verification_rate_at_most_1pct"] is True  # a black chip is far from every face


def test_chance_upper_bound():
    assert chance_upper_bound(0.5, 100) == pytest.approx(0.5 + 1.96 * 0.05)
    assert chance_upper_bound(0.04, 1) > chance_upper_bound(0.04, 100) > 0.04
