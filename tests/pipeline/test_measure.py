"""Measurement geometry on eyes with known landmarks, and head pose on rotated real FaceMesh points."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.pipeline.eyes.landmarks import EyeLandmarks, eyes_from_facemesh, facemesh
from digimask.pipeline.eyes.measure import (
    EYE_ROTATION_RADIUS_MM,
    FOCAL_FACTOR,
    FIXATION_DISTANCE_MM,
    HVID_MM,
    LIMBUS_AHEAD_MM,
    HeadPose,
    head_pose_from_facemesh,
    lid_height,
    measure,
    offset_from_gaze,
    prism_dioptres,
    scale_from,
)


def drawn_eye(side: str, centre_x: float, iris_dx: float = 0.0, iris_dy: float = 0.0, upper: float = 8.0,
              lower: float = 10.0, roll_deg: float = 0.0) -> EyeLandmarks:
    """An eye 60 px wide at y=100, iris radius 12 px (so 1 px = 11.7/24 mm); lids are arcs with apex
    ``upper``/``lower`` px from the canthal line; everything turned by ``roll_deg`` about (200, 100)."""
    lateral_x, medial_x = (centre_x - 30, centre_x + 30) if side == "right" else (centre_x + 30, centre_x - 30)
    xs = np.linspace(lateral_x, medial_x, 9)
    arc = 1 - ((xs - centre_x) / 30) ** 2
    up = np.c_[xs, 100 - upper * arc]
    lo = np.c_[xs, 100 + lower * arc]
    c = np.array([centre_x + iris_dx, 100 - iris_dy])
    rim = c + 12 * np.array([[1, 0], [0, -1], [-1, 0], [0, 1]])
    t = np.radians(roll_deg)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # counter-clockwise on screen
    turn = lambda p: (np.asarray(p) - (200, 100)) @ rot.T + (200, 100)  # noqa: E731
    return EyeLandmarks(side, turn(up), turn(lo), turn(up[-1]), turn(up[0]), turn(c), 12.0, turn(rim))


MM = HVID_MM / 24.0


def test_lid_height_interpolates_the_polyline() -> None:
    lid = np.array([[0.0, 10.0], [10.0, 0.0], [20.0, 10.0]])
    u, v = np.array([1.0, 0.0]), np.array([0.0, -1.0])
    assert lid_height(lid, np.array([5.0, 10.0]), u, v) == pytest.approx(5.0)
    assert np.isnan(lid_height(lid, np.array([30.0, 10.0]), u, v))


def test_prism_dioptres() -> None:
    assert prism_dioptres(45.0) == pytest.approx(100.0)
    assert prism_dioptres(-5.0) == pytest.approx(-8.749, abs=1e-3)


def test_scale_from_hvid_and_from_pixel_spacing() -> None:
    eyes = {"right": drawn_eye("right", 150), "left": drawn_eye("left", 250)}
    hvid = scale_from(eyes, None)
    assert hvid.source == "hvid" and hvid.mm_per_px == pytest.approx(MM)
    assert 0.04 < hvid.rel_uncertainty < 0.06  # 0.5/11.7 anatomical, 0.5 px on 24 px
    spacing = scale_from(eyes, 0.2)
    assert spacing.source == "pixel_spacing" and spacing.mm_per_px == 0.2


@pytest.mark.parametrize("roll", [0.0, 12.0, -15.0])
def test_known_lids_and_iris_are_measured_exactly(roll: float) -> None:
    eyes = {
        "right": drawn_eye("right", 150, upper=8, lower=10, roll_deg=roll),
        "left": drawn_eye("left", 250, upper=14, lower=6, roll_deg=roll),
    }
    m = measure(eyes).eyes
    assert m["right"].mrd1_mm == pytest.approx(8 * MM)
    assert m["right"].mrd2_mm == pytest.approx(10 * MM)
    assert m["left"].mrd1_mm == pytest.approx(14 * MM)
    assert m["left"].fissure_height_mm == pytest.approx(20 * MM)
    assert m["left"].fissure_width_mm == pytest.approx(60 * MM)
    assert m["left"].superior_scleral_show_mm == pytest.approx(2 * MM)  # lid 14 px above a 12 px iris
    assert m["right"].superior_scleral_show_mm == 0.0
    assert m["right"].gaze_h_deg == pytest.approx(0.0, abs=1e-9)


def test_gaze_follows_the_iris_and_binocular_deviation() -> None:
    # Right eye looks 3 px to the patient's left (image right), left eye 3 px to the patient's right:
    # the eyes converge (eso), both 3 px = 1.4625 mm from the centre.
    eyes = {"right": drawn_eye("right", 150, iris_dx=3), "left": drawn_eye("left", 250, iris_dx=-3, iris_dy=2)}
    result = measure(eyes)
    expected = np.degrees(np.arcsin(3 * MM / EYE_ROTATION_RADIUS_MM))
    up = np.arcsin(2 * MM / EYE_ROTATION_RADIUS_MM)  # the left eye also looks up (Fick angles)
    left_h = -np.degrees(np.arcsin(3 * MM / (EYE_ROTATION_RADIUS_MM * np.cos(up))))
    assert result.eyes["right"].gaze_h_deg == pytest.approx(expected)
    assert result.eyes["left"].gaze_h_deg == pytest.approx(left_h)
    assert result.eyes["left"].gaze_v_deg == pytest.approx(np.degrees(up))
    # Net of the convergence of two eyes fixating a camera 1 m away: the iris centres are 94 px apart
    # (45.8 mm), so each eye turns in by atan(22.9 / 1000).
    ipd = np.hypot(94.0, 2.0) * MM
    convergence = 2 * np.degrees(np.arctan(ipd / 2 / FIXATION_DISTANCE_MM))
    assert result.binocular.convergence_deg == pytest.approx(convergence)
    assert result.binocular.horizontal_deg == pytest.approx(left_h - expected + convergence)
    assert result.binocular.horizontal_pd == pytest.approx(prism_dioptres(left_h - expected + convergence))
    assert result.binocular.vertical_deg > 0  # left eye higher
    far = measure(eyes, fixation_distance_mm=1e9).binocular
    assert far.horizontal_deg == pytest.approx(left_h - expected, abs=1e-4)


@pytest.mark.parametrize("yaw, pitch", [(16.0, 0.0), (-20.0, 8.0), (0.0, -12.0)])
def test_a_turned_head_is_not_read_as_gaze(yaw: float, pitch: float) -> None:
    """Eyes straight ahead in a turned head: the limbus, 3.2 mm in front of the canthi, shifts across the
    opening by that depth x sin(turn) (about 5 deg of apparent gaze at 16 deg yaw); gaze reads zero."""
    y, p = np.radians(yaw), np.radians(pitch)
    rot_y = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rot_p = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rot = rot_y @ rot_p  # the face normal turns toward the image's right (yaw) and up (pitch)
    shift = rot @ (0.0, 0.0, LIMBUS_AHEAD_MM)  # mm, camera x right / y up
    dx, dy = shift[0] / MM, shift[1] / MM
    eyes = {"right": drawn_eye("right", 150, iris_dx=dx, iris_dy=dy), "left": drawn_eye("left", 250, iris_dx=dx, iris_dy=dy)}
    naive = measure(eyes).eyes["right"]
    assert abs(naive.gaze_h_deg) + abs(naive.gaze_v_deg) > 3.0  # without the pose: a gaze that is not there
    m = measure(eyes, HeadPose(yaw, pitch, 0.0, rot)).eyes
    for side in ("right", "left"):
        assert m[side].gaze_h_deg == pytest.approx(0.0, abs=0.01)
        assert m[side].gaze_v_deg == pytest.approx(0.0, abs=0.01)


def test_closed_eye_is_flagged() -> None:
    m = measure({"right": drawn_eye("right", 150, upper=2, lower=2, iris_dy=0)}).eyes["right"]
    assert m.closed and m.fissure_height_mm == pytest.approx(4 * MM)
    assert not measure({"right": drawn_eye("right", 150)}).eyes["right"].closed


@pytest.fixture(scope="module")
def astronaut_mesh(astronaut: np.ndarray) -> np.ndarray:
    return facemesh().detect(astronaut)[0]


def test_facemesh_eye_sides_are_anatomical(astronaut_mesh: np.ndarray) -> None:
    eyes = eyes_from_facemesh(astronaut_mesh)
    # Frontal, unmirrored photo: the patient's right eye is on the image's left.
    assert eyes["right"].iris_center[0] < eyes["left"].iris_center[0]
    assert eyes["right"].lateral_canthus[0] < eyes["right"].medial_canthus[0]
    assert eyes["left"].medial_canthus[0] < eyes["left"].lateral_canthus[0]


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll", "tol"),
    [(20.0, 0.0, 0.0, 0.5), (0.0, 15.0, 0.0, 0.5), (0.0, 0.0, -20.0, 0.5), (10.0, -10.0, 10.0, 2.0)],
)
def test_head_pose_recovers_a_known_rotation(
    astronaut_mesh: np.ndarray, yaw: float, pitch: float, roll: float, tol: float
) -> None:
    """Turn real FaceMesh points to frontal, then by a known rotation: the estimate is that rotation
    (exactly for one axis; Euler angles of a combined rotation differ slightly from its parts)."""
    base = head_pose_from_facemesh(astronaut_mesh)
    cam = astronaut_mesh * (1.0, -1.0, -1.0)  # to x right, y up, z toward the camera
    centre = cam.mean(axis=0)
    cam = (cam - centre) @ base.rotation + centre  # undo the photo's own pose

    def rot(axis: int, deg: float) -> np.ndarray:
        """Right-handed rotation about one camera axis."""
        t = np.radians(deg)
        c, s = np.cos(t), np.sin(t)
        i, j = {0: (1, 2), 1: (2, 0), 2: (0, 1)}[axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r

    # yaw about y (nose toward +x), pitch about x (nose up: +y), roll about z (counter-clockwise).
    r = rot(2, roll) @ rot(0, -pitch) @ rot(1, yaw)
    turned = (cam - centre) @ r.T + centre
    pose = head_pose_from_facemesh(turned * (1.0, -1.0, -1.0))
    assert pose.yaw_deg == pytest.approx(yaw, abs=tol)
    assert pose.pitch_deg == pytest.approx(pitch, abs=tol)
    assert pose.roll_deg == pytest.approx(roll, abs=tol)


def _with_reflex(eye: EyeLandmarks, dx_px: float, dy_px: float = 0.0) -> EyeLandmarks:
    """The eye with a corneal reflex dx_px toward the image's right and dy_px up from its limbus centre."""
    from dataclasses import replace

    return replace(eye, reflex=np.asarray(eye.iris_center, float) + (dx_px, -dy_px))


def test_mrd_is_measured_from_a_coaxial_reflex_only() -> None:
    eye = drawn_eye("right", 150, upper=8, lower=10)
    near = measure({"right": _with_reflex(eye, 1.0, 1.5)}).eyes["right"]  # 1.8 px: within 0.2 radii (2.4 px)
    assert near.reference == "reflex"
    # the lid polylines, 7.5 px a segment, drop by 8/16 (upper) and 10/16 px (lower) over the first one
    assert near.mrd1_mm == pytest.approx((8 - 0.5 / 7.5 - 1.5) * MM)
    assert near.mrd2_mm == pytest.approx((10 - 0.625 / 7.5 + 1.5) * MM)
    assert near.fissure_height_mm == pytest.approx(18 * MM)  # through the limbus centre either way
    far = measure({"right": _with_reflex(eye, 0.0, 6.0)}).eyes["right"]  # a lamp above the camera
    assert far.reference == "limbus" and far.mrd1_mm == pytest.approx(8 * MM)
    assert far.reflex_offset_mm == pytest.approx((0.0, 6 * MM))


def test_hirschberg_reads_a_known_exodeviation() -> None:
    """Both eyes fixating with the population angle kappa: each reflex nasal by kappa / 19.4 PD per mm,
    reads 0. The left eye then turned out by 10 PD: its reflex moves nasally by 10 / 19.4 mm more."""
    from digimask.pipeline.eyes.measure import ANGLE_KAPPA_DEG, HIRSCHBERG_PD_PER_MM

    kappa_px = prism_dioptres(ANGLE_KAPPA_DEG) / HIRSCHBERG_PD_PER_MM / MM
    right, left = drawn_eye("right", 150), drawn_eye("left", 250)
    # nasal: toward the image's right for the right eye (on the image's left), toward the left for the left
    straight = measure({"right": _with_reflex(right, kappa_px), "left": _with_reflex(left, -kappa_px)}).binocular
    assert straight.hirschberg_pd == pytest.approx(0.0, abs=1e-9)
    assert straight.hirschberg_sd_pd > 10  # the population kappa's spread dominates
    exo_px = 10.0 / HIRSCHBERG_PD_PER_MM / MM
    exo = measure({"right": _with_reflex(right, kappa_px), "left": _with_reflex(left, -kappa_px - exo_px)}).binocular
    assert exo.hirschberg_pd == pytest.approx(10.0)
    assert measure({"right": right, "left": _with_reflex(left, -kappa_px)}).binocular.hirschberg_pd is None


@pytest.mark.parametrize("yaw, pitch", [(16.0, 0.0), (-20.0, 8.0), (10.0, -12.0)])
def test_eyes_fixating_the_camera_read_zero_camera_gaze(yaw: float, pitch: float) -> None:
    """A turned head whose eyes turn back to the lens (eye-in-head gaze = the inverse of the head's turn,
    at the image centre): eye-in-head gaze reads the turn, camera-referenced gaze reads zero."""
    y, p = np.radians(yaw), np.radians(pitch)
    rot_y = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rot_p = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rot = rot_y @ rot_p
    look = rot.T @ (0.0, 0.0, 1.0)  # the camera's direction in head axes
    h, v = np.degrees(np.arctan2(look[0], look[2])), np.degrees(np.arcsin(look[1]))
    shift = offset_from_gaze(h, v, rot)
    dx, dy = shift[0] / MM, shift[1] / MM
    eyes = {"right": drawn_eye("right", 200, iris_dx=dx, iris_dy=dy)}
    size = (2 * int(eyes["right"].iris_center[0]), 2 * int(eyes["right"].iris_center[1]))  # eye at the centre
    m = measure(eyes, HeadPose(yaw, pitch, 0.0, rot), image_size=size).eyes["right"]
    assert m.gaze_h_deg == pytest.approx(h, abs=0.05) and m.gaze_v_deg == pytest.approx(v, abs=0.05)
    assert abs(m.gaze_h_deg) + abs(m.gaze_v_deg) > 8.0
    assert m.camera_gaze_h_deg == pytest.approx(0.0, abs=0.1) and m.camera_gaze_v_deg == pytest.approx(0.0, abs=0.1)


def test_camera_gaze_is_referred_to_the_line_of_sight_off_the_axis() -> None:
    """A frontal head looking straight ahead, its eye off the image centre (left of it on the horizontal
    midline, or above it on the vertical one): the camera sees the eye from atan(offset / focal length)
    to the side, so the gaze misses the lens by that angle, on that side."""
    pose = HeadPose(0.0, 0.0, 0.0, np.eye(3))
    eyes = {"right": drawn_eye("right", 200)}  # limbus centre (200, 100)
    left_of_centre = measure(eyes, pose, image_size=(1000, 200)).eyes["right"]
    above_centre = measure(eyes, pose, image_size=(400, 800)).eyes["right"]
    for m in (left_of_centre, above_centre):
        assert m.gaze_h_deg == pytest.approx(0.0, abs=0.01) and m.gaze_v_deg == pytest.approx(0.0, abs=0.01)
    off = np.degrees(np.arctan(300 / (FOCAL_FACTOR * 1000)))
    assert left_of_centre.camera_gaze_h_deg == pytest.approx(-off, abs=0.01)
    assert left_of_centre.camera_gaze_v_deg == pytest.approx(0.0, abs=0.01)
    off = np.degrees(np.arctan(300 / (FOCAL_FACTOR * 800)))
    assert above_centre.camera_gaze_v_deg == pytest.approx(off, abs=0.01)
    assert above_centre.camera_gaze_h_deg == pytest.approx(0.0, abs=0.01)
    # the focal length is assumed: half of the off-axis angle joins the eye-in-head gaze's SD
    assert above_centre.camera_gaze_v_sd_deg == pytest.approx(np.hypot(above_centre.gaze_v_sd_deg, off / 2), abs=0.01)
