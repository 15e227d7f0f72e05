"""Ocular measurements in millimetres from eye landmarks (definitions and citations: docs/measurements.md).

Scale comes from the horizontal visible iris diameter (HVID, 11.7 +/- 0.5 mm in adults) or, when the DICOM
header gives one, from the pixel spacing. All per-eye distances are measured in the eye's own frame: x along
the face's horizontal axis (the line between the eyes, or the eye's canthal axis in a single-eye close-up),
y perpendicular to it, so head roll does not change them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from digimask.pipeline.eyes.landmarks import EyeLandmarks

HVID_MM = 11.7  # horizontal visible iris diameter, adult mean
HVID_SD_MM = 0.5
# A mask is faithful when the analysis reads it as it reads the patient within these (MRD1/MRD2, gaze).
ACCEPT_MRD_MM = 0.5
ACCEPT_GAZE_DEG = 2.0
EYE_ROTATION_RADIUS_MM = 10.9  # centre of rotation (13.5 mm behind the corneal apex) to the limbus plane (2.6 mm)
# How far the limbus centre sits in front of the canthal midpoint in primary gaze: what makes a turned head
# move the iris across the eye opening. MediaPipe's face geometry: 2.6-3.8 mm (median 3.2) on 16 faces.
LIMBUS_AHEAD_MM = 3.2
PIXEL_SPACING_REL_UNCERTAINTY = 0.01  # a calibrated header spacing: assume 1%


@dataclass(frozen=True)
class HeadPose:
    """Head rotation relative to the camera, degrees.

    yaw > 0: the face turns toward the patient's left (the nose points to the image's right in an
    unmirrored frontal photo); pitch > 0: chin up; roll > 0: the head tilts toward the patient's left
    shoulder (the face rotates counter-clockwise in the image). ``rotation`` maps canonical face-model
    axes (x patient's left, y up, z out of the face toward the camera) to camera axes (x image right,
    y image up, z toward the camera).
    """

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    rotation: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"yaw_deg": self.yaw_deg, "pitch_deg": self.pitch_deg, "roll_deg": self.roll_deg}


@dataclass(frozen=True)
class Scale:
    mm_per_px: float
    source: Literal["hvid", "pixel_spacing"]
    rel_uncertainty: float  # 1 SD, relative

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EyeMeasurements:
    """One eye. Gaze: h > 0 toward the patient's left, v > 0 up; eye-in-head rotation."""

    side: Literal["right", "left"]
    mrd1_mm: float
    mrd2_mm: float
    fissure_height_mm: float
    fissure_width_mm: float
    superior_scleral_show_mm: float
    inferior_scleral_show_mm: float
    iris_center_px: tuple[float, float]
    iris_radius_px: float
    iris_diameter_mm: float
    gaze_h_deg: float
    gaze_v_deg: float
    closed: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Binocular:
    """Deviation of the left eye's gaze relative to the right eye's.

    horizontal > 0: divergent (exo), < 0: convergent (eso); vertical > 0: the left eye is higher
    (left hypertropia), < 0: the right eye is higher.
    """

    horizontal_deg: float
    vertical_deg: float
    horizontal_pd: float
    vertical_pd: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Measurements:
    scale: Scale
    eyes: dict[str, EyeMeasurements]
    binocular: Binocular | None
    head_pose: HeadPose | None

    def to_dict(self) -> dict:
        return {
            "scale": self.scale.to_dict(),
            "eyes": {side: eye.to_dict() for side, eye in self.eyes.items()},
            "binocular": self.binocular.to_dict() if self.binocular else None,
            "head_pose": self.head_pose.to_dict() if self.head_pose else None,
        }


def prism_dioptres(angle_deg: float) -> float:
    """Prism dioptres for a deviation angle: 100 * tan(angle)."""
    return float(100.0 * np.tan(np.radians(angle_deg)))


def head_pose_from_facemesh(points: np.ndarray) -> HeadPose:
    """Head pose from FaceMesh's 3D points (pixels; z grows away from the camera).

    The face frame: x through the outer eye corners (33 -> 263, toward the patient's left), y from the
    chin (152) to the forehead (10) made orthogonal to x, z = x cross y (out of the face).
    """
    cam = points[:, :3] * (1.0, -1.0, -1.0)  # camera frame: x right, y up, z toward the camera
    x = _unit(cam[263] - cam[33])
    y = cam[10] - cam[152]
    y = _unit(y - x * (y @ x))
    rot = np.column_stack([x, y, np.cross(x, y)])
    yaw = np.degrees(np.arcsin(np.clip(rot[0, 2], -1.0, 1.0)))  # face normal's image-right component
    pitch = np.degrees(np.arctan2(rot[1, 2], rot[2, 2]))  # normal's upward component
    roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))  # eye line rises toward the patient's left
    return HeadPose(float(yaw), float(pitch), float(roll), rot)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def eye_axes(eyes: dict[str, EyeLandmarks]) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (image pixels) toward the patient's left (u) and up (v).

    u runs between the eyes' canthal midpoints when both are visible, else along the one eye's canthi.
    """
    if "right" in eyes and "left" in eyes:
        u = _canthal_mid(eyes["left"]) - _canthal_mid(eyes["right"])
    else:
        eye = next(iter(eyes.values()))
        u = eye.medial_canthus - eye.lateral_canthus
        if eye.side == "left":
            u = -u
    u = _unit(np.asarray(u, dtype=float))
    return u, np.array([u[1], -u[0]])


def lid_height(lid: np.ndarray, centre: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """Signed distance (px, + up) from ``centre`` to the lid polyline along v through ``centre``."""
    a, b = (lid - centre) @ u, (lid - centre) @ v
    for i in range(len(a) - 1):
        if (a[i] <= 0.0 <= a[i + 1]) or (a[i + 1] <= 0.0 <= a[i]):
            span = a[i + 1] - a[i]
            t = 0.5 if span == 0 else -a[i] / span
            return float(b[i] + t * (b[i + 1] - b[i]))
    return float("nan")


def scale_from(eyes: dict[str, EyeLandmarks], pixel_spacing_mm: float | None) -> Scale:
    """mm per pixel from the header's spacing, else from the iris diameter (HVID)."""
    if pixel_spacing_mm:
        return Scale(float(pixel_spacing_mm), "pixel_spacing", PIXEL_SPACING_REL_UNCERTAINTY)
    diameters = np.array([2.0 * e.iris_radius for e in eyes.values()])
    d = float(diameters.mean())
    # Landmark noise: half a pixel, or half the between-eye difference when that is larger.
    px_sd = max(0.5, float(np.ptp(diameters)) / 2.0)
    rel = float(np.hypot(HVID_SD_MM / HVID_MM, px_sd / d))
    return Scale(HVID_MM / d, "hvid", rel)


def measure(
    eyes: dict[str, EyeLandmarks],
    head_pose: HeadPose | None = None,
    pixel_spacing_mm: float | None = None,
    min_open_ratio: float = 0.12,
) -> Measurements:
    """All measurements for the visible eyes (see docs/measurements.md)."""
    scale = scale_from(eyes, pixel_spacing_mm)
    u, v = eye_axes(eyes)
    rot = head_rotation(head_pose, u, v)
    out = {}
    for side, eye in eyes.items():
        k = scale.mm_per_px
        c = eye.iris_center
        up, down = lid_height(eye.upper_lid, c, u, v), -lid_height(eye.lower_lid, c, u, v)
        width = eye.width
        r_mm = eye.iris_radius * k
        offset = (c - _canthal_mid(eye)) * (k, -k)  # mm, camera frame: x image right, y image up
        gaze_h, gaze_v = gaze_from_offset(offset, rot)
        out[side] = EyeMeasurements(
            side=side,
            mrd1_mm=up * k,
            mrd2_mm=down * k,
            fissure_height_mm=(up + down) * k,
            fissure_width_mm=width * k,
            superior_scleral_show_mm=max(0.0, up * k - r_mm),
            inferior_scleral_show_mm=max(0.0, down * k - r_mm),
            iris_center_px=(float(c[0]), float(c[1])),
            iris_radius_px=float(eye.iris_radius),
            iris_diameter_mm=2.0 * r_mm,
            gaze_h_deg=gaze_h,
            gaze_v_deg=gaze_v,
            closed=not (up + down) / width >= min_open_ratio,
        )
    binocular = None
    if "right" in out and "left" in out:
        dh = out["left"].gaze_h_deg - out["right"].gaze_h_deg
        dv = out["left"].gaze_v_deg - out["right"].gaze_v_deg
        binocular = Binocular(dh, dv, prism_dioptres(dh), prism_dioptres(dv))
    return Measurements(scale, out, binocular, head_pose)


def _canthal_mid(eye: EyeLandmarks) -> np.ndarray:
    return (eye.medial_canthus + eye.lateral_canthus) / 2.0


def head_rotation(head_pose: HeadPose | None, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Head axes (x patient's left, y up, z out of the face) to camera axes (x image right, y image up,
    z toward the camera): the head pose's, or a frontal head rolled to the eyes' axes (u, v) without one."""
    if head_pose is not None and head_pose.rotation is not None:
        return head_pose.rotation
    return np.column_stack([(u[0], -u[1], 0.0), (v[0], -v[1], 0.0), (0.0, 0.0, 1.0)])


def _limbus_in_head(h_deg: float, v_deg: float) -> np.ndarray:
    """Limbus centre relative to the canthal midpoint, head axes (mm), for an eye-in-head gaze."""
    h, v = np.radians(h_deg), np.radians(v_deg)
    r = EYE_ROTATION_RADIUS_MM
    return np.array([r * np.sin(h) * np.cos(v), r * np.sin(v), LIMBUS_AHEAD_MM - r + r * np.cos(h) * np.cos(v)])


def offset_from_gaze(h_deg: float, v_deg: float, rotation: np.ndarray) -> np.ndarray:
    """Image-plane offset (mm, camera x right / y up) of the limbus centre from the canthal midpoint."""
    return (rotation @ _limbus_in_head(h_deg, v_deg))[:2]


def gaze_from_offset(offset_mm: np.ndarray, rotation: np.ndarray) -> tuple[float, float]:
    """Eye-in-head gaze (h, v degrees) whose limbus centre projects to ``offset_mm``: the inverse of
    :func:`offset_from_gaze` (the depth term depends on the gaze itself: a few fixed-point steps)."""
    r = EYE_ROTATION_RADIUS_MM
    a, b = rotation[:2, :2], rotation[:2, 2]
    h = v = 0.0
    for _ in range(6):
        x, y = np.linalg.solve(a, offset_mm - b * _limbus_in_head(h, v)[2])
        v = float(np.degrees(np.arcsin(np.clip(y / r, -1.0, 1.0))))
        h = float(np.degrees(np.arcsin(np.clip(x / (r * np.cos(np.radians(v))), -1.0, 1.0))))
    return h, v
