"""The analysis stage on real photos: values, invariance to photographic changes, close-ups."""
from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from digimask.evaluation.eye_warps import iris_moved, lid_moved
from digimask.pipeline.errors import Rejected
from digimask.pipeline.eyes.analyse import Analysis, AnalysisOptions, analyse
from PIL import Image

SWAP = {"right": "left", "left": "right"}
MRD_TOL_MM, GAZE_TOL_DEG = 0.3, 2.0  # the invariance targets


@pytest.fixture(scope="module")
def photos(astronaut: np.ndarray, grace_hopper: np.ndarray) -> dict[str, np.ndarray]:
    return {"astronaut": astronaut, "grace_hopper": grace_hopper}


@pytest.fixture(scope="module")
def baseline(photos: dict[str, np.ndarray]) -> dict[str, Analysis]:
    return {name: analyse(image) for name, image in photos.items()}


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_full_face_photo_is_measured(baseline: dict[str, Analysis], name: str) -> None:
    a = baseline[name]
    assert a.mode == "face" and set(a.eyes) == {"right", "left"}
    assert a.face_landmarks.shape == (478, 3)
    assert abs(a.head_pose.yaw_deg) < 10 and abs(a.head_pose.roll_deg) < 10
    for m in a.measurements.eyes.values():
        assert 1.5 < m.mrd1_mm < 7.0 and 2.0 < m.mrd2_mm < 7.5  # adult normal ranges, roughly
        assert 20.0 < m.fissure_width_mm < 36.0
        assert m.iris_diameter_mm == pytest.approx(11.7, rel=0.05)
        assert not m.closed
    assert a.measurements.scale.source == "hvid"
    assert 0.04 < a.measurements.scale.rel_uncertainty < 0.1


def test_to_dict_is_json_with_the_documented_keys(baseline: dict[str, Analysis]) -> None:
    d = json.loads(json.dumps(baseline["grace_hopper"].to_dict()))
    assert d["status"] == "ok" and d["mode"] == "face"
    assert set(d["head_pose"]) == {"yaw_deg", "pitch_deg", "roll_deg"}
    for eye in d["eyes"].values():
        for key in ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "fissure_width_mm", "gaze_h_deg", "gaze_v_deg",
                    "iris_center_px", "iris_radius_px"):
            assert key in eye


def test_pixel_spacing_sets_the_scale(photos: dict[str, np.ndarray], baseline: dict[str, Analysis]) -> None:
    a = analyse(photos["grace_hopper"], pixel_spacing_mm=0.5)
    assert a.measurements.scale.source == "pixel_spacing"
    hvid = baseline["grace_hopper"].measurements
    ratio = 0.5 / hvid.scale.mm_per_px
    assert a.measurements.eyes["right"].mrd1_mm == pytest.approx(hvid.eyes["right"].mrd1_mm * ratio, rel=0.02)


def _rescaled(image: np.ndarray, factor: float) -> np.ndarray:
    img = Image.fromarray(image)
    return np.asarray(img.resize((round(img.width * factor), round(img.height * factor)), Image.LANCZOS))


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).rotate(degrees, Image.BICUBIC, expand=True, fillcolor=(128, 128, 128)))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


VARIANTS = {
    "scale0.75": lambda im: _rescaled(im, 0.75),
    "scale1.5": lambda im: _rescaled(im, 1.5),
    "scale2": lambda im: _rescaled(im, 2.0),
    "rot-15": lambda im: _rotated(im, -15),
    "rot-7": lambda im: _rotated(im, -7),
    "rot+7": lambda im: _rotated(im, 7),
    "rot+15": lambda im: _rotated(im, 15),
    "jpeg75": lambda im: _jpeg(im, 75),
    "jpeg90": lambda im: _jpeg(im, 90),
}


CASES = [(name, v) for name in ("astronaut", "grace_hopper") for v in sorted(VARIANTS)]
# Half size: grace_hopper's iris is then 6 px across; the astronaut's face is rejected as too small
# (tests/pipeline/test_quality.py).
CASES.append(("grace_hopper", "scale0.5"))
VARIANTS["scale0.5"] = lambda im: _rescaled(im, 0.5)


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_measurements_survive_photographic_changes(
    photos: dict[str, np.ndarray], baseline: dict[str, Analysis], name: str, variant: str
) -> None:
    base = baseline[name].measurements.eyes
    got = analyse(np.ascontiguousarray(VARIANTS[variant](photos[name]))).measurements.eyes
    for side in ("right", "left"):
        assert abs(got[side].mrd1_mm - base[side].mrd1_mm) < MRD_TOL_MM
        assert abs(got[side].mrd2_mm - base[side].mrd2_mm) < MRD_TOL_MM
        assert abs(got[side].gaze_h_deg - base[side].gaze_h_deg) < GAZE_TOL_DEG
        assert abs(got[side].gaze_v_deg - base[side].gaze_v_deg) < GAZE_TOL_DEG


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_horizontal_flip_swaps_the_eyes(photos: dict[str, np.ndarray], baseline: dict[str, Analysis], name: str) -> None:
    base = baseline[name]
    flipped = analyse(np.ascontiguousarray(photos[name][:, ::-1]))
    width = photos[name].shape[1]
    for side in ("right", "left"):
        mine, theirs = flipped.measurements.eyes[side], base.measurements.eyes[SWAP[side]]
        assert abs(mine.mrd1_mm - theirs.mrd1_mm) < MRD_TOL_MM
        assert abs(mine.mrd2_mm - theirs.mrd2_mm) < MRD_TOL_MM
        # Mirroring reverses "toward the patient's left": horizontal gaze changes sign.
        assert abs(mine.gaze_h_deg + theirs.gaze_h_deg) < GAZE_TOL_DEG
        assert abs(mine.gaze_v_deg - theirs.gaze_v_deg) < GAZE_TOL_DEG
        assert abs(flipped.eyes[side].iris_center[0] - (width - base.eyes[SWAP[side]].iris_center[0])) < 1.0
    assert flipped.head_pose.yaw_deg == pytest.approx(-base.head_pose.yaw_deg, abs=3.0)
    assert flipped.head_pose.roll_deg == pytest.approx(-base.head_pose.roll_deg, abs=3.0)


def _eye_closeup(image: np.ndarray, analysis: Analysis, side: str, size: int = 384) -> tuple[np.ndarray, float]:
    eye = analysis.eyes[side]
    centre = (eye.lateral_canthus + eye.medial_canthus) / 2
    half = 1.4 * eye.width
    x0, y0 = int(centre[0] - half), int(centre[1] - half)
    crop = image[y0:y0 + int(2 * half), x0:x0 + int(2 * half)]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC)), size / crop.shape[1]


@pytest.mark.parametrize("side", ["right", "left"])
def test_eye_closeup_is_measured_like_the_full_face(
    photos: dict[str, np.ndarray], baseline: dict[str, Analysis], side: str
) -> None:
    base = baseline["grace_hopper"]
    image, _ = _eye_closeup(photos["grace_hopper"], base, side)
    a = analyse(image, options=AnalysisOptions(laterality=side))
    assert a.mode == "closeup" and list(a.eyes) == [side] and a.side_source == "header"
    got, ref = a.measurements.eyes[side], base.measurements.eyes[side]
    # Same eye, same HVID scale, but the eye model's crops are sized from a different first estimate
    # (its own eye width here, FaceMesh's in the face path) and its lids move with crop size: measured
    # path difference on this photo up to 0.67 mm (docs/measurements.md), so not the invariance target.
    assert abs(got.mrd1_mm - ref.mrd1_mm) < 0.8
    assert abs(got.mrd2_mm - ref.mrd2_mm) < 0.8
    assert got.fissure_width_mm == pytest.approx(ref.fissure_width_mm, rel=0.1)


def test_closeup_without_laterality_guesses_and_says_so(photos: dict[str, np.ndarray], baseline: dict[str, Analysis]) -> None:
    image, _ = _eye_closeup(photos["astronaut"], baseline["astronaut"], "right")
    a = analyse(image)
    assert a.mode == "closeup" and a.side_source == "canthal_tilt" and len(a.eyes) == 1


def test_forced_face_mode_rejects_a_closeup(photos: dict[str, np.ndarray], baseline: dict[str, Analysis]) -> None:
    image, _ = _eye_closeup(photos["astronaut"], baseline["astronaut"], "left")
    with pytest.raises(Rejected, match="no face found"):
        analyse(image, options=AnalysisOptions(mode="face"))


def test_repeated_and_concurrent_calls_agree(photos: dict[str, np.ndarray], baseline: dict[str, Analysis]) -> None:
    image = photos["grace_hopper"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: analyse(image), range(6)))
    ref = baseline["grace_hopper"].measurements.eyes["right"].mrd1_mm
    assert all(r.measurements.eyes["right"].mrd1_mm == pytest.approx(ref, abs=1e-9) for r in results)


@pytest.mark.parametrize("side", ["right", "left"])
def test_known_iris_shift_moves_the_iris_and_gaze(
    photos: dict[str, np.ndarray], baseline: dict[str, Analysis], side: str
) -> None:
    """Synthetic ground truth: the iris (and the sclera beside it) is moved sideways by k px; the canthi
    stay. The iris centre follows (68-77 % of k here); gaze only 37 % of the true change, because the eye
    model drags the canthi with the iris (docs/measurements.md): asserted as direction and a floor."""
    image, base = photos["grace_hopper"], baseline["grace_hopper"]
    eye = base.eyes[side]
    k = 0.3 * eye.iris_radius
    moved = analyse(iris_moved(image, eye, k))
    shift = moved.eyes[side].iris_center[0] - eye.iris_center[0]
    assert 0.6 * k < shift < 1.2 * k
    gaze = moved.measurements.eyes[side].gaze_h_deg - base.measurements.eyes[side].gaze_h_deg
    true = np.degrees(k * base.measurements.scale.mm_per_px / 10.9)  # small-angle, 10.9 mm radius
    assert 0.2 * true < gaze < 1.2 * true


def test_known_lid_drop_lowers_mrd1(photos: dict[str, np.ndarray], baseline: dict[str, Analysis]) -> None:
    """Synthetic ground truth: the upper lid margin slides down over the iris by k px (the iris, its
    centre and the canthi stay), so MRD1 falls by exactly k px (1.8 mm). Measured with the landmark
    geometry: 31 % of that (the models regress toward an average eye, and their iris centre follows the
    lid; docs/measurements.md): asserted as direction and a floor."""
    image, base = photos["grace_hopper"], baseline["grace_hopper"]
    eye = base.eyes["right"]
    k = 0.3 * eye.iris_radius
    dropped = analyse(lid_moved(image, eye, k, "upper")).measurements.eyes["right"]
    true = -k * base.measurements.scale.mm_per_px
    change = dropped.mrd1_mm - base.measurements.eyes["right"].mrd1_mm
    assert 1.0 * true < change < 0.15 * true


def test_known_lower_lid_rise_lowers_mrd2(photos: dict[str, np.ndarray], baseline: dict[str, Analysis]) -> None:
    """Synthetic ground truth: the lower lid margin slides up over the iris by k px (1.7-1.8 mm). With the
    landmark geometry (the lower lid moved to the image's edge over the iris, edges.refine_lower_lids)
    MRD2 follows 10-34 % of that on grace_hopper's eyes: asserted as direction and a floor per eye."""
    image, base = photos["grace_hopper"], baseline["grace_hopper"]
    for side in ("right", "left"):
        eye = base.eyes[side]
        k = 0.3 * eye.iris_radius
        raised = analyse(lid_moved(image, eye, k, "lower")).measurements.eyes[side]
        true = -k * base.measurements.scale.mm_per_px
        change = raised.mrd2_mm - base.measurements.eyes[side].mrd2_mm
        assert 1.0 * true < change < 0.04 * true


@pytest.fixture(scope="module")
def enlarged() -> dict[str, object]:
    """grace_hopper at 1.5x (eyes 42-46 px wide, irises 19-21 px across), analysed with the fitted geometry."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = _rescaled(np.asarray(Image.open(f).convert("RGB")), 1.5)
    options = AnalysisOptions(geometry="edges")
    return {"image": image, "options": options, "base": analyse(image, options=options)}


def test_fitted_geometry_carries_its_fit_and_seed(enlarged) -> None:
    base = enlarged["base"]
    for eye in base.eyes.values():
        assert eye.fit.limbus.ok and eye.fit.upper_lid.ok and eye.fit.lower_lid.ok
        assert eye.seed is not None and eye.seed.fit is None
        assert len(eye.upper_lid) == len(eye.seed.upper_lid) and len(eye.lower_lid) == len(eye.seed.lower_lid)
        assert np.array_equal(eye.upper_lid[[0, -1]], eye.seed.upper_lid[[0, -1]])  # canthi are the landmarks'


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("sign", [1, -1])
def test_fitted_iris_centre_follows_a_known_move(enlarged, side: str, sign: int) -> None:
    """The iris moved sideways by k = 0.3 radii: the fitted limbus centre moves by k (measured 0.87-1.00 k;
    the landmark model's 0.66-0.77 k), the other eye stays (within 0.1 mm)."""
    image, options, base = enlarged["image"], enlarged["options"], enlarged["base"]
    eye = base.eyes[side]
    k = sign * 0.3 * eye.iris_radius
    moved = analyse(iris_moved(image, eye, k), options=options)
    assert 0.85 < (moved.eyes[side].iris_center[0] - eye.iris_center[0]) / k < 1.15
    other = SWAP[side]
    mm = base.measurements.scale.mm_per_px
    assert np.linalg.norm(moved.eyes[other].iris_center - base.eyes[other].iris_center) * mm < 0.1


def test_fitted_lid_margins_follow_a_known_move(enlarged) -> None:
    """Each lid in turn slid over the globe by k = 0.3 radii: the fitted margin at the iris centre moves by
    a median of k over the four lids (measured 0.95-1.27 each). MRD itself follows less (0.5-0.8: the iris
    centre's vertical position is the landmark model's, which follows the lid; docs/measurements.md)."""
    from digimask.pipeline.eyes.measure import eye_axes, lid_height

    image, options, base = enlarged["image"], enlarged["options"], enlarged["base"]
    u, v = eye_axes(base.eyes)
    follow = []
    for side, eye in base.eyes.items():
        k = 0.3 * eye.iris_radius
        for lid in ("upper", "lower"):
            moved = analyse(lid_moved(image, eye, k, lid), options=options).eyes[side]
            curve = (lambda e: e.upper_lid) if lid == "upper" else (lambda e: e.lower_lid)  # noqa: E731
            shift = lid_height(curve(moved), eye.iris_center, u, v) - lid_height(curve(eye), eye.iris_center, u, v)
            follow.append(abs(shift) / k)
    assert 0.85 < float(np.median(follow)) < 1.15
    assert min(follow) > 0.7
