"""The digital mask masker: privacy (a face recogniser no longer matches), fidelity (the analysis stage
measures the same eyes on the mask), and re-rendering from the stored parameters alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
from digimask.pipeline.dicom import private_block
from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.eyes.analyse import analyse
from digimask.pipeline.mask.digital_mask import (
    DigitalMask,
    fidelity,
    mask_image,
    render_params,
)
from digimask.pipeline.mask.maskers import create_masker
from pydicom.dataset import Dataset

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


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_analysis_measures_the_same_eyes_on_the_mask(masked, name):
    original, result = masked[name]
    fid = fidelity(analyse(original), analyse(result.pixels))
    assert fid.mrd_mm <= 0.5, fid
    assert fid.gaze_deg <= 2.0, fid


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_rerender_from_private_block_equals_the_mask(masked, name):
    _, result = masked[name]
    ds = Dataset()
    private_block.write(ds, result.params["schema"], DigitalMask.name, result.params)
    schema, masker, params = private_block.read(ds)
    assert (schema, masker) == ("digimask.params/1", "digital_mask")
    np.testing.assert_array_equal(render_params(params), result.pixels)
    json.dumps(result.notes)


def test_monochrome_input_gives_monochrome_mask(grace_hopper):
    grey = np.asarray(grace_hopper.mean(axis=2), dtype=np.uint8)
    out = DigitalMask(refine=0).mask(grey, Dataset())
    assert out.pixels.shape == grey.shape and out.pixels.dtype == np.uint8
    assert np.abs(out.pixels.astype(int) - grey).mean() > 20
    np.testing.assert_array_equal(render_params(out.params)[..., 0], out.pixels)


def test_strict_mode_refuses_an_unconfirmed_mask(grace_hopper):
    strict = DigitalMask(refine=0, strict=True)
    first = mask_image(grace_hopper, refine=0)
    if first.fidelity is not None and first.fidelity.score() <= 1.0:
        pytest.skip("the first round already meets the limits on this photo")
    with pytest.raises(MaskingFailed, match="fidelity"):
        strict.mask(grace_hopper, Dataset())


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
        DigitalMask(refine=0, multiple_faces="reject").mask(pair, Dataset())
    masked = DigitalMask(refine=0, multiple_faces="largest").mask(pair, Dataset())
    assert masked.pixels.shape == pair.shape and not np.array_equal(masked.pixels, pair)


def test_refinement_learns_the_detectors_response_and_its_coupling():
    """A detector that follows a rendered lid 40% of the way and drags the iris centre with it: one
    observed round is enough for the next correction to aim where a fixed gain would not."""
    from digimask.pipeline.mask.digital_mask import _Response

    true = np.eye(4)
    true[0, 0], true[3, 0] = 0.4, 0.2  # d(MRD1 read)/d(lid move); d(iris read along v)/d(lid move)
    response = _Response()
    dc = np.array([1.5, 0.0, 0.0, 0.0])
    response.learn(dc, -true @ dc)  # the error (patient minus mask) shrinks by what the detector saw move
    wanted = np.array([0.9, 0.0, 0.0, 0.0])
    step = response.step(true @ wanted)
    np.testing.assert_allclose(step, wanted, atol=1e-9)


def test_refinement_ignores_noise_sized_and_implausible_observations():
    from digimask.pipeline.mask.digital_mask import MIN_RESPONSE, MIN_STEP_PX, _Response

    response = _Response()
    start = response.jacobian.copy()
    response.learn(np.array([0.5 * MIN_STEP_PX, 0, 0, 0]), np.array([-5.0, 0, 0, 0]))  # within the noise
    response.learn(np.array([0, 2.0, 0, 0]), np.array([0, 2.0, 0, 0]))  # the mask moved the wrong way
    response.learn(np.array([0, 0, 2.0, 0]), np.array([0, 0, -0.5 * MIN_RESPONSE * 2.0, 0]))  # barely followed
    np.testing.assert_array_equal(response.jacobian, start)


def test_notes_say_how_far_the_refinement_moved_the_drawn_eyes(masked, astronaut):
    """The direct fit is what a mask without refinement draws; the notes measure the refined mask from it."""
    _, result = masked["astronaut"]
    change = result.notes["refinement_change"]
    direct = mask_image(astronaut, refine=0)
    assert direct.refinement_change() == {"gaze_deg": 0.0, "vergence_deg": 0.0, "lid_mm": 0.0}
    final = result.params["eyes"]
    moved = max(abs(final[side][k] - getattr(direct.params.eyes[side], k))
                for side in ("right", "left") for k in ("gaze_yaw_deg", "gaze_pitch_deg"))
    assert change["gaze_deg"] == pytest.approx(moved, abs=0.01)
    assert 0.0 <= change["vergence_deg"] <= 2 * change["gaze_deg"] and change["lid_mm"] >= 0.0


def test_keep_alignment_draws_no_new_difference_between_the_eyes(astronaut):
    """The refinement turns the eyes only together in the kept direction: there the drawn difference
    between them stays the direct fit's; in the other direction each eye is refined on its own."""
    free = mask_image(astronaut, keep_alignment="none")
    vertical = mask_image(astronaut)  # the default
    both = mask_image(astronaut, keep_alignment="both")
    np.testing.assert_allclose(both.vergence_change(), 0.0, atol=0.01)
    assert vertical.vergence_change()[1] == pytest.approx(0.0, abs=0.01)
    assert vertical.vergence_change()[0] > 1.0 and free.vergence_change()[0] > 1.0
    assert free.vergence_change()[1] > 0.1
    assert both.refinement_change()["gaze_deg"] > 0.5  # it still refines, both eyes together
    with pytest.raises(ValueError, match="keep_alignment"):
        DigitalMask(keep_alignment=True)


def test_eyes_turned_together_share_one_step_that_cancels_both_eyes_errors():
    """The joint step of two eyes that may only turn up and down together: where both eyes' errors come
    from one shared vertical move plus their own lid and sideways moves, it finds exactly those moves;
    where they disagree, both eyes still get one and the same vertical move."""
    from digimask.pipeline.mask.digital_mask import _joint_steps, _Response

    response = {side: _Response() for side in ("right", "left")}
    response["right"].jacobian = np.array([[0.6, 0, 0, 0], [0, 0.7, 0, 0.1], [0, 0, 0.8, 0], [0.2, 0, 0, 0.4]])
    response["left"].jacobian = np.array([[0.5, 0, 0, 0], [0, 0.6, 0, 0], [0, 0, 0.9, 0], [0, 0.1, 0, 0.3]])
    true = {"right": np.array([1.0, -0.5, 2.0, 1.5]), "left": np.array([0.2, 0.4, -1.0, 1.5])}
    errors = {side: response[side].jacobian @ step for side, step in true.items()}
    steps = _joint_steps(response, errors, (3,))
    for side in true:
        np.testing.assert_allclose(steps[side], true[side], atol=1e-9)
    errors["left"] = errors["left"] + np.array([0, 0, 0, 0.6])  # the left eye alone reads higher
    steps = _joint_steps(response, errors, (3,))
    assert steps["right"][3] == steps["left"][3]
    steps = _joint_steps(response, errors, (2, 3))
    np.testing.assert_array_equal(steps["right"][2:], steps["left"][2:])
