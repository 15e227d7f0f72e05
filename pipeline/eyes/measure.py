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
# 1 SD of a position the edge fit could not improve (the landmark models' own scatter is not known per
# image; a pixel is about their repeatability across crops here, docs/measurements.md).
LANDMARK_SD_PX = 1.0
# Where the eyes fixate (the camera): each eye turns in by atan(half the interpupillary distance / this),
# so a pair fixating the camera converges by twice that; the deviation is reported net of it.
FIXATION_DISTANCE_MM = 1000.0
# The camera, for gaze relative to it: photos carry no intrinsics, so the principal point is taken at the
# image centre and the focal length as this times the longer side (a normal lens; the mask's fit assumes the
# same). It only matters off the image's centre: an eye at 10 % of the width from it is seen 3.8 deg off axis.
# Portrait and macro lenses are longer (2-4x the side): the assumed length is taken as uncertain by half
# of itself, and that share of the off-axis angle enters the camera-referenced gaze's SD.
FOCAL_FACTOR = 1.5
FOCAL_REL_UNCERTAINTY = 0.5
# Photographic Hirschberg ratio for the reflex measured from the limbus centre: 19.4 prism dioptres per
# mm (Barry JC, Backes A, Invest Ophthalmol Vis Sci 1997;38:2597-2607; individual ratios 14-24 PD/mm,
# Hasebe S et al., IOVS 1998;39:2782-2785).
HIRSCHBERG_PD_PER_MM = 19.4
# MRD is measured from the corneal reflex only when the light was near the camera's axis (a flash): the
# reflex then lies near the limbus centre (a fixating eye's about 0.5 mm nasal: angle kappa). A reflex of
# a lamp off the axis lies further out and is no MRD reference: the limbus centre is used.
REFLEX_MRD_MAX_OFFSET = 0.2  # limbus radii (about 1.2 mm)
# Angle kappa: a fixating eye's reflex sits nasal by about 4.7 +/- 4.5 deg (photographs of 112 adults:
# Shin HS, Jang JK, J Korean Ophthalmic Opt Soc 2015;20:485-489); taken out of the Hirschberg reading.
ANGLE_KAPPA_DEG, ANGLE_KAPPA_SD_DEG = 4.7, 4.5


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
    reference: Literal["reflex", "limbus"] = "limbus"  # what MRD1/MRD2 are measured from
    mrd1_sd_mm: float = float("nan")  # 1 SD: fit residuals and the scale
    mrd2_sd_mm: float = float("nan")
    fissure_height_sd_mm: float = float("nan")
    fissure_width_sd_mm: float = float("nan")
    superior_scleral_show_sd_mm: float = float("nan")
    inferior_scleral_show_sd_mm: float = float("nan")
    iris_diameter_sd_mm: float = float("nan")
    gaze_h_sd_deg: float = float("nan")
    gaze_v_sd_deg: float = float("nan")
    # Gaze relative to the line from the eye to the camera (0, 0: looking into the lens), camera axes:
    # h > 0 toward the image's right (the patient's left in an unmirrored photo), v > 0 up. SD: the
    # eye-in-head gaze's and the focal length's (FOCAL_REL_UNCERTAINTY); the head pose's own error is not
    # known per image and is not in it.
    camera_gaze_h_deg: float = float("nan")
    camera_gaze_v_deg: float = float("nan")
    camera_gaze_h_sd_deg: float = float("nan")
    camera_gaze_v_sd_deg: float = float("nan")
    reflex_px: tuple[float, float] | None = None
    reflex_offset_mm: tuple[float, float] | None = None  # reflex from the limbus centre: +u (patient's left), +v (up)
    reflex_offset_sd_mm: float | None = None

    def to_dict(self) -> dict:
        return {k: (None if isinstance(x, float) and not np.isfinite(x) else x) for k, x in asdict(self).items()}


@dataclass(frozen=True)
class Binocular:
    """Deviation of the left eye's gaze relative to the right eye's, net of fixating the camera.

    horizontal > 0: divergent (exo), < 0: convergent (eso); vertical > 0: the left eye is higher
    (left hypertropia), < 0: the right eye is higher. ``horizontal_deg`` = gaze_h(left) - gaze_h(right)
    + ``convergence_deg`` (two eyes fixating a camera ``fixation_distance_mm`` away converge by that much,
    which is not a squint).
    """

    horizontal_deg: float
    vertical_deg: float
    horizontal_pd: float
    vertical_pd: float
    horizontal_sd_deg: float = float("nan")
    vertical_sd_deg: float = float("nan")
    convergence_deg: float = 0.0  # added to the raw difference: the vergence of fixating the camera
    fixation_distance_mm: float = FIXATION_DISTANCE_MM
    hirschberg_pd: float | None = None  # from both corneal reflexes, > 0 exo; None without both
    hirschberg_sd_pd: float | None = None

    def to_dict(self) -> dict:
        return {k: (None if isinstance(x, float) and not np.isfinite(x) else x) for k, x in asdict(self).items()}


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
    """mm per pixel from the header's spacing, else from the limbus diameter (HVID)."""
    if pixel_spacing_mm:
        return Scale(float(pixel_spacing_mm), "pixel_spacing", PIXEL_SPACING_REL_UNCERTAINTY)
    diameters = np.array([2.0 * e.iris_radius for e in eyes.values()])
    d = float(diameters.mean())
    # The fitted radius' own 1 SD where there is one, else half a pixel; half the between-eye difference
    # when that is larger.
    fit_sd = [2.0 * e.fit.limbus_radius_sd for e in eyes.values() if e.fit is not None
              and np.isfinite(e.fit.limbus_radius_sd)]
    px_sd = max(float(np.sqrt(np.mean(np.square(fit_sd)))) if fit_sd else 0.5, float(np.ptp(diameters)) / 2.0)
    rel = float(np.hypot(HVID_SD_MM / HVID_MM, px_sd / d))
    return Scale(HVID_MM / d, "hvid", rel)


def _sd(quality, fallback: float = LANDMARK_SD_PX) -> float:
    """A fitted part's 1 SD in px, or the landmark SD where it was not fitted."""
    if quality is None or not quality.ok or not np.isfinite(quality.sd_px):
        return fallback
    return float(quality.sd_px)


def measure(
    eyes: dict[str, EyeLandmarks],
    head_pose: HeadPose | None = None,
    pixel_spacing_mm: float | None = None,
    min_open_ratio: float = 0.12,
    fixation_distance_mm: float = FIXATION_DISTANCE_MM,
    image_size: tuple[int, int] | None = None,
) -> Measurements:
    """All measurements for the visible eyes (see docs/measurements.md).

    A pure function of the eye geometry: ``eyes`` may come from the analysis (fitted to a photo) or from
    anything drawn (a rendered avatar's lids, limbus and reflex projected to the image). MRD1/MRD2 are
    measured from the corneal reflex where ``eye.reflex`` is set, else from the limbus centre
    (``reference``); gaze always from the limbus centre. Uncertainties (``*_sd``, 1 SD) combine the fit
    qualities in ``eye.fit`` (LANDMARK_SD_PX for what was not fitted) with the scale's. ``image_size``
    (width, height) places the camera's axis for the camera-referenced gaze (without it, each eye is taken
    to lie on the axis).
    """
    scale = scale_from(eyes, pixel_spacing_mm)
    u, v = eye_axes(eyes)
    rot = head_rotation(head_pose, u, v)
    k, rel = scale.mm_per_px, scale.rel_uncertainty
    out = {}
    for side, eye in eyes.items():
        fit = eye.fit
        c = np.asarray(eye.iris_center, float)
        centre_sd = _sd(fit.limbus if fit else None)
        reflex = None if eye.reflex is None else np.asarray(eye.reflex, float)
        coaxial = reflex is not None and np.linalg.norm(reflex - c) <= REFLEX_MRD_MAX_OFFSET * eye.iris_radius
        ref, ref_sd = (reflex, _sd(fit.reflex if fit else None, 0.5)) if coaxial else (c, centre_sd)
        up, down = lid_height(eye.upper_lid, ref, u, v), -lid_height(eye.lower_lid, ref, u, v)
        up_sd, down_sd = _sd(fit.upper_lid if fit else None), _sd(fit.lower_lid if fit else None)
        # Fissure height through the limbus centre, as before: independent of the reference.
        height = lid_height(eye.upper_lid, c, u, v) - lid_height(eye.lower_lid, c, u, v)
        width = eye.width
        r_mm = eye.iris_radius * k
        r_sd = fit.limbus_radius_sd if fit is not None and np.isfinite(fit.limbus_radius_sd) else 0.5
        offset = (c - _canthal_mid(eye)) * (k, -k)  # mm, camera frame: x image right, y image up
        gaze_h, gaze_v = gaze_from_offset(offset, rot)
        camera_h, camera_v = camera_gaze(gaze_h, gaze_v, rot, c, image_size)
        axis_h, axis_v = camera_gaze(0.0, 0.0, np.eye(3), c, image_size)  # where a gaze along the axis misses
        # Gaze SD: the limbus centre's and the canthal midpoint's (landmarks) scatter through the
        # eye's radius; small-angle, about 5.3 deg per mm.
        gaze_sd = float(np.degrees(np.hypot(centre_sd, LANDMARK_SD_PX / np.sqrt(2)) * k / EYE_ROTATION_RADIUS_MM))

        def mm_sd(value_px: float, px_sd: float) -> float:
            return float(np.hypot(px_sd * k, abs(value_px) * k * rel))

        show_up, show_down = up * k - r_mm, down * k - r_mm
        out[side] = EyeMeasurements(
            side=side,
            mrd1_mm=up * k,
            mrd2_mm=down * k,
            fissure_height_mm=height * k,
            fissure_width_mm=width * k,
            superior_scleral_show_mm=max(0.0, show_up),
            inferior_scleral_show_mm=max(0.0, show_down),
            iris_center_px=(float(c[0]), float(c[1])),
            iris_radius_px=float(eye.iris_radius),
            iris_diameter_mm=2.0 * r_mm,
            gaze_h_deg=gaze_h,
            gaze_v_deg=gaze_v,
            closed=not height / width >= min_open_ratio,
            reference="reflex" if coaxial else "limbus",
            mrd1_sd_mm=mm_sd(up, float(np.hypot(up_sd, ref_sd))),
            mrd2_sd_mm=mm_sd(down, float(np.hypot(down_sd, ref_sd))),
            fissure_height_sd_mm=mm_sd(height, float(np.hypot(up_sd, down_sd))),
            fissure_width_sd_mm=mm_sd(width, LANDMARK_SD_PX * np.sqrt(2)),
            superior_scleral_show_sd_mm=mm_sd(up - eye.iris_radius, float(np.hypot(up_sd, np.hypot(ref_sd, r_sd)))),
            inferior_scleral_show_sd_mm=mm_sd(down - eye.iris_radius, float(np.hypot(down_sd, np.hypot(ref_sd, r_sd)))),
            iris_diameter_sd_mm=mm_sd(2 * eye.iris_radius, 2 * r_sd),
            gaze_h_sd_deg=gaze_sd,
            gaze_v_sd_deg=gaze_sd,
            camera_gaze_h_deg=camera_h,
            camera_gaze_v_deg=camera_v,
            camera_gaze_h_sd_deg=float(np.hypot(gaze_sd, FOCAL_REL_UNCERTAINTY * axis_h)),
            camera_gaze_v_sd_deg=float(np.hypot(gaze_sd, FOCAL_REL_UNCERTAINTY * axis_v)),
            reflex_px=None if reflex is None else (float(reflex[0]), float(reflex[1])),
            reflex_offset_mm=None if reflex is None else (float((reflex - c) @ u * k), float((reflex - c) @ v * k)),
            reflex_offset_sd_mm=None if reflex is None else float(np.hypot(ref_sd, centre_sd) * k),
        )
    binocular = None
    if "right" in out and "left" in out:
        binocular = _binocular(out, eyes, k, fixation_distance_mm)
    return Measurements(scale, out, binocular, head_pose)


def _binocular(out: dict[str, EyeMeasurements], eyes: dict[str, EyeLandmarks], mm_per_px: float,
               fixation_distance_mm: float) -> Binocular:
    """Deviation between the eyes, net of the convergence on the camera, and the Hirschberg reading."""
    right, left = out["right"], out["left"]
    ipd = float(np.linalg.norm(np.subtract(left.iris_center_px, right.iris_center_px))) * mm_per_px
    convergence = float(2.0 * np.degrees(np.arctan(ipd / 2.0 / fixation_distance_mm)))
    dh = left.gaze_h_deg - right.gaze_h_deg + convergence
    dv = left.gaze_v_deg - right.gaze_v_deg
    hirschberg = hirschberg_sd = None

    def coaxial(m: EyeMeasurements) -> bool:  # a reflex of a light at the camera: not far above or below
        return m.reflex_offset_mm is not None and abs(m.reflex_offset_mm[1]) <= REFLEX_MRD_MAX_OFFSET * m.iris_diameter_mm / 2

    if coaxial(right) and coaxial(left):
        # An eye turned out shows its reflex displaced nasally (toward the other eye: +u for the right
        # eye, -u for the left), so the two nasal displacements add up to the divergence, less each
        # eye's angle kappa. (Fixating the camera needs no correction: the reflex is of its own flash.)
        nasal = right.reflex_offset_mm[0] - left.reflex_offset_mm[0]
        kappa = 2.0 * prism_dioptres(ANGLE_KAPPA_DEG)
        hirschberg = float(HIRSCHBERG_PD_PER_MM * nasal - kappa)
        reflex_sd = float(np.hypot(right.reflex_offset_sd_mm, left.reflex_offset_sd_mm))
        hirschberg_sd = float(np.hypot(HIRSCHBERG_PD_PER_MM * reflex_sd, np.sqrt(2) * prism_dioptres(ANGLE_KAPPA_SD_DEG)))
    return Binocular(dh, dv, prism_dioptres(dh), prism_dioptres(dv),
                     float(np.hypot(right.gaze_h_sd_deg, left.gaze_h_sd_deg)),
                     float(np.hypot(right.gaze_v_sd_deg, left.gaze_v_sd_deg)),
                     convergence, float(fixation_distance_mm), hirschberg, hirschberg_sd)


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


def camera_gaze(h_deg: float, v_deg: float, rotation: np.ndarray, position_px: np.ndarray,
                image_size: tuple[int, int] | None) -> tuple[float, float]:
    """The eye-in-head gaze turned into camera axes by the head rotation, as Fick angles (horizontal,
    then vertical) about the direction from the eye to the camera: (0, 0) is looking into the lens."""
    h, v = np.radians(h_deg), np.radians(v_deg)
    look = rotation @ np.array([np.sin(h) * np.cos(v), np.sin(v), np.cos(h) * np.cos(v)])  # x right, y up, z to camera
    to_camera = np.array([0.0, 0.0, 1.0])
    if image_size is not None:
        w, hgt = image_size
        f = FOCAL_FACTOR * max(w, hgt)
        to_camera = _unit(np.array([-(position_px[0] - w / 2.0) / f, (position_px[1] - hgt / 2.0) / f, 1.0]))
    right = _unit(np.array([1.0, 0.0, 0.0]) - to_camera[0] * to_camera)
    up = np.cross(to_camera, right)
    return (float(np.degrees(np.arctan2(look @ right, look @ to_camera))),
            float(np.degrees(np.arcsin(np.clip(look @ up, -1.0, 1.0)))))


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
