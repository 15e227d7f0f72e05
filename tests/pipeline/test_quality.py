"""Quality gates, alone and through analyse() on real and drawn images."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.pipeline.errors import MaskingFailed, Rejected
from digimask.pipeline.eyes.analyse import AnalysisOptions, analyse
from digimask.pipeline.eyes.quality import (
    QualityThresholds,
    check_eyes_open,
    check_face_count,
    check_face_size,
    check_pose,
    occluded_eyes,
)
from PIL import Image, ImageDraw


def test_face_count_policy() -> None:
    with pytest.raises(Rejected, match="no face or eye found"):
        check_face_count(0, "largest")
    with pytest.raises(Rejected, match="3 faces found"):
        check_face_count(3, "reject")
    check_face_count(3, "largest")
    check_face_count(1, "reject")


def test_pose_size_and_open_eyes() -> None:
    t = QualityThresholds()
    check_pose(30.0, -20.0, 10.0, t)
    with pytest.raises(Rejected, match=r"extreme pose: yaw \+40 deg"):
        check_pose(40.0, 0.0, 0.0, t)
    with pytest.raises(Rejected, match="face too small"):
        check_face_size(20.0, t)
    check_eyes_open({"right": 0.05, "left": 0.3}, t)  # one closed eye (complete ptosis) is a finding
    with pytest.raises(Rejected, match="eyes closed"):
        check_eyes_open({"right": 0.05, "left": float("nan")}, t)


def gradient() -> np.ndarray:
    ramp = np.linspace(0, 255, 400).astype(np.uint8)
    return np.dstack([np.tile(ramp, (300, 1)), np.tile(ramp[::-1], (300, 1)), np.full((300, 400), 90, np.uint8)])


@pytest.mark.parametrize("name", ["coffee", "gradient", "chelsea"])
def test_non_faces_are_rejected(name: str) -> None:
    from skimage import data

    image = gradient() if name == "gradient" else getattr(data, name)()
    with pytest.raises(Rejected, match="no face or eye found") as info:
        analyse(image)
    assert isinstance(info.value, MaskingFailed)


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    h = max(a.shape[0], b.shape[0])
    pad = lambda x: np.pad(x, ((0, h - x.shape[0]), (0, 0), (0, 0)), mode="edge")  # noqa: E731
    return np.ascontiguousarray(np.hstack([pad(a), pad(b)]))


def test_two_faces_reject_or_largest(astronaut: np.ndarray, grace_hopper: np.ndarray) -> None:
    image = side_by_side(astronaut, grace_hopper)  # grace_hopper's face is the larger one
    reject = AnalysisOptions(quality=QualityThresholds(multiple_faces="reject"))
    with pytest.raises(Rejected, match="2 faces found"):
        analyse(image, options=reject)
    result = analyse(image)
    assert result.faces_found == 2
    assert all(eye.iris_center[0] > astronaut.shape[1] for eye in result.eyes.values())


def test_small_face_is_rejected(astronaut: np.ndarray) -> None:
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.LANCZOS))
    with pytest.raises(Rejected, match="face too small"):
        analyse(small)


def test_pose_and_closed_eye_gates_use_the_configured_limits(astronaut: np.ndarray) -> None:
    tilted = np.asarray(Image.fromarray(astronaut).rotate(25, Image.BICUBIC))
    with pytest.raises(Rejected, match="extreme pose: roll"):
        analyse(tilted, options=AnalysisOptions(quality=QualityThresholds(max_roll_deg=15)))
    assert abs(analyse(tilted).head_pose.roll_deg - 25) < 5
    with pytest.raises(Rejected, match="eyes closed"):
        analyse(astronaut, options=AnalysisOptions(quality=QualityThresholds(min_open_ratio=0.9)))


def test_unsupported_pixels_are_rejected() -> None:
    with pytest.raises(Rejected, match="unsupported image"):
        analyse(np.zeros((10, 10, 3), np.float32))


def test_occluded_eyes_policy() -> None:
    t = QualityThresholds()
    assert occluded_eyes({"right": 80.0, "left": 3.0}, t) == ["left"]
    assert occluded_eyes({"right": 80.0, "left": 60.0}, t) == []
    with pytest.raises(Rejected, match=r"eyes not visible \(occluded\)"):
        occluded_eyes({"right": 0.0, "left": 3.0}, t)
    with pytest.raises(Rejected, match=r"eye not visible \(occluded\)"):
        occluded_eyes({"left": 0.0}, t)


@pytest.fixture(scope="module")
def astronaut_eyes(astronaut: np.ndarray) -> dict:
    return analyse(astronaut).eyes


# Fixed pixel boxes just over the astronaut's fissures (lid points +-0.1/0.2 eye widths, rounded inwards),
# independent of the analysis under test; a larger cover hides the whole face from the detectors.
ASTRONAUT_FISSURES = {"right": (194, 95, 213, 107), "left": (238, 97, 257, 109)}


def cover(image: np.ndarray, sides: list[str], colour: tuple[int, int, int]) -> np.ndarray:
    """A flat rectangle over each named eye's fissure."""
    out = Image.fromarray(image)
    for side in sides:
        ImageDraw.Draw(out).rectangle(ASTRONAUT_FISSURES[side], fill=colour)
    return np.asarray(out)


def skin_colour(image: np.ndarray, eyes: dict) -> tuple[int, int, int]:
    """The median colour of the cheek, one eye width below the right eye."""
    eye = eyes["right"]
    x, y = (eye.iris_center + (0, 1.2 * eye.width)).astype(int)
    r = int(eye.width / 4)
    return tuple(int(c) for c in np.median(image[y - r:y + r, x - r:x + r].reshape(-1, 3), axis=0))


@pytest.mark.parametrize("patch", ["black bar", "skin patch"])
def test_covered_eyes_are_not_measured(astronaut: np.ndarray, astronaut_eyes: dict, patch: str) -> None:
    colour = (0, 0, 0) if patch == "black bar" else skin_colour(astronaut, astronaut_eyes)
    both = cover(astronaut, ["right", "left"], colour)
    with pytest.raises(Rejected, match=r"eyes not visible \(occluded\)"):
        analyse(both)
    ungated = AnalysisOptions(quality=QualityThresholds(min_eye_spread=0.0))
    if patch == "black bar":  # without the gate, invented eyes are measured
        assert set(analyse(both, options=ungated).measurements.eyes) == {"right", "left"}
    else:  # the eye model reads a flat skin patch as closed lids: still never measured
        with pytest.raises(Rejected, match="eyes closed"):
            analyse(both, options=ungated)
    one = analyse(cover(astronaut, ["left"], colour))
    assert set(one.eyes) == set(one.measurements.eyes) == {"right"}
    assert np.linalg.norm(one.eyes["right"].iris_center - astronaut_eyes["right"].iris_center) < 3


def test_required_fit_rejects_eyes_too_small_to_fit(astronaut: np.ndarray) -> None:
    """The astronaut's irises are 7 px across: with the fitted geometry they keep the landmarks and say
    why; requiring a fit quarantines the photo with that reason instead."""
    kept = analyse(astronaut, options=AnalysisOptions(geometry="edges"))
    assert all(not e.fit.limbus.ok and "too small" in e.fit.limbus.reason for e in kept.eyes.values())
    with pytest.raises(Rejected, match="eye edges not found: iris 7 px across: too small to fit edges"):
        analyse(astronaut, options=AnalysisOptions(geometry="edges", quality=QualityThresholds(require_fit=True)))
