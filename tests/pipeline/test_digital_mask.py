"""The digital mask masker: privacy (a face recogniser no longer matches), exactness (the drawn geometry is
the measured geometry), fidelity (the analysis stage measures the same eyes on the mask), the drawn corneal
reflex, and re-rendering from the stored parameters alone."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from pydicom.dataset import Dataset

from digimask.pipeline.dicom import private_block
from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.eyes.analyse import analyse
from digimask.pipeline.mask.digital_mask import (
    DigitalMask,
    fidelity,
    mask_image,
    render_params,
)
from digimask.pipeline.mask.drawn import (
    TOLERANCE_DEG,
    TOLERANCE_MM,
    TOLERANCE_PD,
    check_drawn,
    drawn_eyes,
)
from digimask.pipeline.mask.fit import fit
from digimask.pipeline.mask.maskers import create_masker
from digimask.pipeline.mask.render import render

SAME_PERSON = 0.6  # dlib ResNet embedding: same person below this distance


@pytest.fixture(scope="module")
def recogniser():
    """dlib's HOG detector, 5-point aligner and ResNet embedding (model files from face_recognition_models).

    The package's ``__init__`` needs pkg_resources (gone from recent setuptools): locate its files without
    importing it.
    """
    import importlib.util
    from pathlib import Path

    import dlib

    models = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]) / "models"
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def _embedding(recogniser, image: np.ndarray, box=None) -> tuple[np.ndarray, object]:
    detector, shape, model = recogniser
    if box is None:
        boxes = detector(image, 1)
        assert boxes, "no face for the recogniser"
        box = max(boxes, key=lambda b: b.area())
    return np.array(model.compute_face_descriptor(image, shape(image, box))), box


@pytest.fixture(scope="module")
def masked(astronaut, grace_hopper):
    masker = DigitalMask()
    return {name: (img, masker.mask(img, Dataset())) for name, img in
            (("astronaut", astronaut), ("grace_hopper", grace_hopper))}


def test_registered_as_the_digital_mask():
    m = create_masker("digital_mask")
    assert m.name == "digital_mask" and m.cleans_recognizable_features


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_mask_is_not_recognised_as_the_patient(masked, recogniser, name):
    original, result = masked[name]
    assert result.pixels.shape == original.shape and result.pixels.dtype == np.uint8
    ref, box = _embedding(recogniser, original)
    # The attacker gets the patient's face box even if it would not find a face on the mask itself.
    emb, _ = _embedding(recogniser, result.pixels, box)
    assert np.linalg.norm(emb - ref) > SAME_PERSON


def test_masks_of_different_people_share_the_template(masked, recogniser):
    """Two patients' masks are closer to each other than either is to its patient (one neutral face)."""
    (a, ra), (b, rb) = masked["astronaut"], masked["grace_hopper"]
    ea, _ = _embedding(recogniser, ra.pixels, _embedding(recogniser, a)[1])
    eb, _ = _embedding(recogniser, rb.pixels, _embedding(recogniser, b)[1])
    assert np.linalg.norm(ea - eb) < SAME_PERSON


@pytest.mark.xfail(strict=True, reason=(
    "the analysis misreads rendered eyes: on 32 drawn eyes of the dev photos it reads MRD1 +0.6 mm (edge "
    "geometry) / +1.2 mm (landmarks) and vertical gaze -4 deg from the exact drawn values (issue 12 open; "
    "docs/digital_mask.md, Proof). Strict: this fails as soon as the reading agrees, so the mark is removed."))
@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_analysis_measures_the_same_eyes_on_the_mask(masked, name):
    original, result = masked[name]
    fid = fidelity(analyse(original), analyse(result.pixels))
    assert fid.mrd_mm <= 0.5, fid
    assert fid.gaze_deg <= 2.0, fid


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_drawn_geometry_is_the_measured_geometry(masked, name):
    """Every mask carries the check of its own drawn lids, limbus and gaze against the measurement."""
    original, result = masked[name]
    patient = analyse(original)
    check = check_drawn(fit(patient), patient)
    assert check.ok and check.worst_mm <= TOLERANCE_MM and check.worst_deg <= TOLERANCE_DEG, check.differences
    assert check.worst_pd <= TOLERANCE_PD  # no squint drawn that was not measured
    assert result.notes["drawn_check"] == check.to_dict()
    assert set(check.differences) >= {f"{side}.{m}" for side in ("right", "left")
                                      for m in ("mrd1_mm", "mrd2_mm", "fissure_width_mm", "iris_diameter_mm", "gaze_h_deg")}


def test_a_mask_that_cannot_be_drawn_exactly_is_refused_with_the_numbers(astronaut):
    """An iris far beyond the template's anatomical bounds cannot be drawn: the check names the difference."""
    patient = analyse(astronaut)
    eye = patient.eyes["left"]
    impossible = replace(patient, eyes={**patient.eyes, "left": replace(eye, iris_radius=eye.iris_radius * 1.8)})
    impossible = replace(impossible, measurements=replace(
        patient.measurements, eyes={**patient.measurements.eyes, "left": replace(
            patient.measurements.eyes["left"], iris_diameter_mm=patient.measurements.eyes["left"].iris_diameter_mm * 1.8)}))
    check = check_drawn(fit(impossible), impossible)
    assert not check.ok
    assert "left.iris_diameter_mm" in check.reason() and "right." not in check.reason()


def test_a_lowered_lid_is_drawn_lowered_by_the_measured_amount(astronaut):
    """Known warp: the upper lid of one eye moved down over the globe. The mask of the warped photo differs
    from the mask of the original by exactly the measured change (drawn from the measurement, 1:1), and the
    other eye's drawing does not move."""
    from digimask.evaluation.eye_warps import lid_moved

    patient = analyse(astronaut)
    eye = patient.eyes["right"]
    warped = analyse(lid_moved(astronaut, eye, 0.25 * eye.iris_radius, "upper"))
    drawn = {name: check_drawn(fit(a), a) for name, a in (("original", patient), ("warped", warped))}
    assert all(c.ok for c in drawn.values())
    from digimask.pipeline.mask.drawn import measure_drawn

    before, after = measure_drawn(fit(patient), patient), measure_drawn(fit(warped), warped)
    measured = warped.measurements.eyes["right"].mrd1_mm - patient.measurements.eyes["right"].mrd1_mm
    drawn_change = after.eyes["right"].mrd1_mm - before.eyes["right"].mrd1_mm
    assert measured < -0.1  # the analysis saw the ptosis
    assert drawn_change == pytest.approx(measured, abs=2 * TOLERANCE_MM)
    assert abs(after.eyes["left"].mrd1_mm - warped.measurements.eyes["left"].mrd1_mm) <= TOLERANCE_MM


@pytest.mark.parametrize("backend", ["moderngl", "pyrender"])
def test_the_corneal_reflex_is_drawn_where_it_was_measured(astronaut, backend):
    """A reflex offset from the limbus centre (in iris radii) is drawn there on the avatar's cornea: the
    bright spot's centroid lies within half a pixel of the drawn limbus centre plus that offset."""
    params = fit(analyse(astronaut))
    offsets = {"right": (0.2, -0.1), "left": (-0.15, 0.05)}
    with_reflex = replace(params, eyes={s: replace(e, reflex=offsets[s]) for s, e in params.eyes.items()})
    image, plain = render(with_reflex, backend), render(params, backend)
    diff = np.abs(image.astype(int) - plain).sum(axis=2)
    ys, xs = np.nonzero(diff > 30)
    claimed = np.zeros(len(xs), bool)
    for side, eye in drawn_eyes(params).items():
        want = eye.iris_center + np.asarray(offsets[side]) * eye.iris_radius
        near = np.hypot(xs + 0.5 - want[0], ys + 0.5 - want[1]) < eye.iris_radius
        claimed |= near
        w = diff[ys[near], xs[near]]
        got = np.array([((xs[near] + 0.5) * w).sum(), ((ys[near] + 0.5) * w).sum()]) / w.sum()
        assert np.linalg.norm(got - want) < 0.5, (side, got, want)
        assert image[ys[near], xs[near]].max() == 255  # a light reflex, not a grey smudge
    assert claimed.all()  # nothing else in the image changed


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_rerender_from_private_block_equals_the_mask(masked, name):
    _, result = masked[name]
    ds = Dataset()
    private_block.write(ds, result.params["schema"], DigitalMask.name, result.params)
    schema, masker, params = private_block.read(ds)
    assert (schema, masker) == ("digimask.params/2", "digital_mask")
    np.testing.assert_array_equal(render_params(params), result.pixels)
    json.dumps(result.notes)


def test_a_version_1_block_still_renders(masked):
    """Blocks written before reflexes existed (schema /1, no ``reflex`` key) render as a /2 block without a
    reflex does, bit for bit."""
    _, result = masked["astronaut"]
    old = json.loads(json.dumps(result.params))
    old["schema"] = "digimask.params/1"
    for eye in old["eyes"].values():
        eye.pop("reflex")
    without = json.loads(json.dumps(result.params))
    for eye in without["eyes"].values():
        eye["reflex"] = None
    np.testing.assert_array_equal(render_params(old), render_params(without))


def test_monochrome_input_gives_monochrome_mask(grace_hopper):
    grey = np.asarray(grace_hopper.mean(axis=2), dtype=np.uint8)
    out = DigitalMask().mask(grey, Dataset())
    assert out.pixels.shape == grey.shape and out.pixels.dtype == np.uint8
    assert np.abs(out.pixels.astype(int) - grey).mean() > 20
    np.testing.assert_array_equal(render_params(out.params)[..., 0], out.pixels)


def test_strict_mode_refuses_an_unconfirmed_mask(grace_hopper):
    first = mask_image(grace_hopper)
    if fidelity(first.analysis, analyse(first.pixels)).score() <= 1.0:
        pytest.skip("the analysis already reads this mask within the limits")
    with pytest.raises(MaskingFailed, match="fidelity"):
        DigitalMask(strict=True).mask(grace_hopper, Dataset())


def test_no_face_is_refused_never_passed_through():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with pytest.raises(MaskingFailed):
        DigitalMask().mask(noise, Dataset())


def test_multiple_faces_policy(astronaut, grace_hopper) -> None:
    """Two people in one photo: mask the larger face, or refuse the photo (the node then quarantines it)."""
    h = min(astronaut.shape[0], grace_hopper.shape[0])
    pair = np.ascontiguousarray(np.concatenate([astronaut[:h], grace_hopper[:h]], axis=1))
    with pytest.raises(MaskingFailed, match="faces found"):
        DigitalMask(multiple_faces="reject").mask(pair, Dataset())
    masked = DigitalMask(multiple_faces="largest").mask(pair, Dataset())
    assert masked.pixels.shape == pair.shape and not np.array_equal(masked.pixels, pair)
