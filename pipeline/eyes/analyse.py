"""The analysis stage: find the face and eyes, gate quality, measure. Used by the mask and by the node.

``analyse(image)`` picks the path per image: MediaPipe FaceMesh for full-face photos (a face is kept only
if it passes a sanity check, because FaceMesh invents a face on an eye close-up), else the iris model on
the eye(s) of an external-eye close-up. Quality gates raise :class:`Rejected` with a short reason.
Models are created once per process and calls are serialised, so one worker thread (or several) may
call ``analyse`` repeatedly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from digimask.pipeline.errors import Rejected
from digimask.pipeline.eyes.edges import fit_eyes
from digimask.pipeline.eyes.landmarks import (
    REFINE_CROP_FACTORS,
    EyeLandmarks,
    IrisModel,
    detect_face_boxes,
    detect_near_face_boxes,
    eyes_from_facemesh,
    facemesh,
    find_closeup_eyes,
    iris_model,
    refine_eye,
)
from digimask.pipeline.eyes.measure import (
    FIXATION_DISTANCE_MM,
    HeadPose,
    Measurements,
    eye_axes,
    head_pose_from_facemesh,
    lid_height,
    measure,
)
from digimask.pipeline.eyes.quality import (
    QualityThresholds,
    check_eye_size,
    check_eyes_open,
    check_face_count,
    check_face_size,
    check_fitted,
    check_pose,
    eye_spread,
    occluded_eyes,
    open_ratio,
)

__all__ = ["Analysis", "AnalysisOptions", "EyeLandmarks", "HeadPose", "Rejected", "analyse", "analyse_face"]

# A FaceMesh face that no detector confirms is kept only if the eye model, run on each of its eyes,
# finds the same lids (mean disagreement / eye width). Real faces here: 0.03-0.09 (0.16 on one small,
# detector-confirmed face); the face FaceMesh invents on an eye close-up: 0.15.
MAX_FACE_EYE_DISAGREEMENT = 0.10
# A close-up eye is kept only if its contour is stable across crops and orientations (spread / width).
# Eyes here: 0.05-0.06; coffee, rocket, cat photos: >= 0.09.
MAX_CLOSEUP_SPREAD = 0.075


@dataclass(frozen=True)
class AnalysisOptions:
    mode: Literal["auto", "face", "closeup"] = "auto"
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    laterality: Literal["right", "left"] | None = None  # a lone close-up eye's side, e.g. from DICOM
    max_faces: int = 4
    fixation_distance_mm: float = FIXATION_DISTANCE_MM  # where the eyes look (the camera), for the deviation
    # "edges": lid margins, limbus (horizontal position) and reflex fitted to the image (edges.fit_eyes);
    # "landmarks": the landmark models' geometry, with the reflex found inside it. Not yet the default:
    # see docs/measurements.md (the fitted lids disagree with the landmark model's by up to 3 mm on the
    # test photos, so an image whose size crosses MIN_FIT_RADIUS_PX would not measure alike).
    geometry: Literal["landmarks", "edges"] = "landmarks"


@dataclass(frozen=True)
class Analysis:
    mode: Literal["face", "closeup"]
    image_size: tuple[int, int]  # (width, height)
    eyes: dict[str, EyeLandmarks]  # keys "right"/"left" (patient's anatomical side), absent if not visible
    face_landmarks: np.ndarray | None  # (478, 3) FaceMesh points in pixels, face mode only
    head_pose: HeadPose | None  # face mode only
    measurements: Measurements
    faces_found: int = 1
    side_source: Literal["face", "position", "header", "canthal_tilt"] = "face"

    def to_dict(self) -> dict:
        """JSON-ready: the ``measure`` command's object for one input, without ``path``."""
        return {
            "status": "ok",
            "reason": None,
            "mode": self.mode,
            "image_size": list(self.image_size),
            "eyes": {side: {**eye.to_dict(), "fit": self.eyes[side].fit.to_dict() if self.eyes[side].fit else None}
                     for side, eye in self.measurements.eyes.items()},
            "head_pose": self.head_pose.to_dict() if self.head_pose else None,
            "binocular": self.measurements.binocular.to_dict() if self.measurements.binocular else None,
            "scale": self.measurements.scale.to_dict(),
            "faces_found": self.faces_found,
            "side_source": self.side_source,
        }


def analyse(
    image: np.ndarray, *, pixel_spacing_mm: float | None = None, options: AnalysisOptions | None = None
) -> Analysis:
    """Landmarks, quality gates and measurements for one HxWx3 uint8 RGB image; raises :class:`Rejected`."""
    opts = options or AnalysisOptions()
    image = _check_image(image)
    if opts.mode != "closeup":
        result = _analyse_face(image, pixel_spacing_mm, opts)
        if result is not None:
            return result
        if opts.mode == "face":
            raise Rejected("no face found", "no_face")
    return _analyse_closeup(image, pixel_spacing_mm, opts)


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise Rejected(f"unsupported image: shape {image.shape}, {image.dtype} (need HxWx3 uint8 RGB)",
                       "unsupported_image")
    return np.ascontiguousarray(image[:, :, :3])


def _bbox(points: np.ndarray) -> np.ndarray:
    return np.r_[points[:, :2].min(axis=0), points[:, :2].max(axis=0)]


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """True if either box's centre lies inside the other."""
    def inside(p, box):
        return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]

    return inside((a[:2] + a[2:]) / 2, b) or inside((b[:2] + b[2:]) / 2, a)


def _eye_disagreement(model: IrisModel, image: np.ndarray, eyes: dict[str, EyeLandmarks]) -> float:
    """Mean lid-point distance between FaceMesh and the eye model on FaceMesh's eye crops / eye width."""
    errors = []
    for side, eye in eyes.items():
        centre = (eye.lateral_canthus + eye.medial_canthus) / 2
        check = model.eye(image, centre, 2.3 * max(eye.width, 4.0), side, side == "left")
        a = np.vstack([eye.upper_lid, eye.lower_lid])
        b = np.vstack([check.upper_lid, check.lower_lid])
        errors.append(float(np.linalg.norm(a - b, axis=1).mean() / max(eye.width, 1e-6)))
    return float(np.mean(errors))


def _mesh_on_crop(image: np.ndarray, box: np.ndarray, max_faces: int) -> np.ndarray | None:
    """FaceMesh on a square crop around a detector box (faces the mesh missed in the full image)."""
    h, w = image.shape[:2]
    c, side = (box[:2] + box[2:]) / 2, 2.0 * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = int(max(0, c[0] - side / 2)), int(max(0, c[1] - side / 2))
    x1, y1 = int(min(w, c[0] + side / 2)), int(min(h, c[1] + side / 2))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    meshes = facemesh(max_faces).detect(np.ascontiguousarray(image[y0:y1, x0:x1]))
    if not meshes:
        return None
    best = max(meshes, key=lambda p: np.prod(np.ptp(p[:, :2], axis=0)))
    return best + (x0, y0, 0.0)


def _analyse_face(image: np.ndarray, spacing: float | None, opts: AnalysisOptions) -> Analysis | None:
    model = iris_model()
    boxes = detect_face_boxes(image)
    near_boxes: list[np.ndarray] | None = None  # only looked for when a FaceMesh face is unconfirmed
    faces: list[np.ndarray] = []  # FaceMesh points of the faces kept
    for points in facemesh(opts.max_faces).detect(image):
        confirmed = any(_overlaps(_bbox(points), b) for b in boxes)
        if not confirmed:
            near_boxes = detect_near_face_boxes(image) if near_boxes is None else near_boxes
            confirmed = any(_overlaps(_bbox(points), b) for b in near_boxes)
        if confirmed or _eye_disagreement(model, image, eyes_from_facemesh(points)) <= MAX_FACE_EYE_DISAGREEMENT:
            faces.append(points)
    unmeshed = [b for b in boxes if not any(_overlaps(_bbox(p), b) for p in faces)]
    count = len(faces) + len(unmeshed)
    if count == 0:
        return None
    check_face_count(count, opts.quality.multiple_faces)
    area = lambda box: float(np.prod(box[2:] - box[:2]))  # noqa: E731
    largest_box = max(unmeshed, key=area, default=None)
    if largest_box is not None and (not faces or area(largest_box) > max(area(_bbox(p)) for p in faces)):
        points = _mesh_on_crop(image, largest_box, opts.max_faces)
        if points is not None:
            faces.append(points)
    if not faces:
        raise Rejected("face found but no landmarks (face too small or occluded)", "no_landmarks")
    points = max(faces, key=lambda p: area(_bbox(p)))
    return analyse_face(image, points, pixel_spacing_mm=spacing, options=opts, faces_found=count)


def analyse_face(image: np.ndarray, points: np.ndarray, *, pixel_spacing_mm: float | None = None,
                 options: AnalysisOptions | None = None, faces_found: int = 1) -> Analysis:
    """The analysis of one face once found: its FaceMesh ``points`` (pixels) to eyes, gates, measurements
    (what ``analyse`` does after finding the face; a clip's tracker calls it with the face it followed)."""
    image, opts, spacing = _check_image(image), options or AnalysisOptions(), pixel_spacing_mm
    eyes = fit_eyes(image, refine_eyes(image, eyes_from_facemesh(points)), adopt=opts.geometry == "edges")
    interocular = float(np.linalg.norm(
        (eyes["left"].lateral_canthus + eyes["left"].medial_canthus) / 2
        - (eyes["right"].lateral_canthus + eyes["right"].medial_canthus) / 2
    ))
    check_face_size(interocular, opts.quality)
    pose = head_pose_from_facemesh(points)
    check_pose(pose.yaw_deg, pose.pitch_deg, pose.roll_deg, opts.quality)
    eyes = _visible(image, eyes, opts)
    check_fitted(eyes, opts.quality)
    h, w = image.shape[:2]
    result = measure(eyes, pose, spacing, opts.quality.min_open_ratio, opts.fixation_distance_mm, (w, h))
    _check_open(result, eyes, opts)
    return Analysis("face", (w, h), eyes, points, pose, result, faces_found, "face")


def _analyse_closeup(image: np.ndarray, spacing: float | None, opts: AnalysisOptions) -> Analysis:
    found = [
        e for e in find_closeup_eyes(image, iris_model(), opts.laterality)
        if e.consistency <= MAX_CLOSEUP_SPREAD and _plausible_eye(e.eye)
    ]
    if not found:
        raise Rejected("no face or eye found", "no_face")
    eyes = fit_eyes(image, refine_eyes(image, {e.eye.side: e.eye for e in found}), adopt=opts.geometry == "edges")
    for eye in eyes.values():
        check_eye_size(eye.width, opts.quality)
    eyes = _visible(image, eyes, opts)
    check_fitted(eyes, opts.quality)
    h, w = image.shape[:2]
    result = measure(eyes, None, spacing, opts.quality.min_open_ratio, opts.fixation_distance_mm, (w, h))
    _check_open(result, eyes, opts)
    return Analysis("closeup", (w, h), eyes, None, None, result, 0, found[0].side_source)


def refine_eyes(image: np.ndarray, eyes: dict[str, EyeLandmarks]) -> dict[str, EyeLandmarks]:
    """Eye-model landmarks on crops aligned with the eyes' horizontal axis (see ``refine_eye``).

    A first, cheap pass re-centres the crops on the eye model's own canthi; the second averages. Crop
    sizes stay proportional to the incoming eye width: the eye model reads some eyes (large, turned or
    hooded) narrower at every scale, so sizing crops from its own output can shrink them to nothing.
    These are the seeds of the edge fits (``edges.fit_eyes``).
    """
    widths = {side: eye.width for side, eye in eyes.items()}
    for factors in ((2.3,), REFINE_CROP_FACTORS):
        u, _ = eye_axes(eyes)
        angle = float(np.arctan2(u[1], u[0]))
        eyes = {side: refine_eye(iris_model(), image, eye, angle, factors, widths[side]) for side, eye in eyes.items()}
    return eyes


def _plausible_eye(eye: EyeLandmarks) -> bool:
    """Anatomy check: iris size relative to the fissure, iris centre between the canthi and the lids."""
    ratio = eye.iris_radius / max(eye.width, 1e-6)
    axis = eye.medial_canthus - eye.lateral_canthus
    t = float((eye.iris_center - eye.lateral_canthus) @ axis / (axis @ axis))
    u, v = eye_axes({eye.side: eye})
    r = eye.iris_radius
    up = lid_height(eye.upper_lid, eye.iris_center, u, v)
    down = -lid_height(eye.lower_lid, eye.iris_center, u, v)
    lids_ok = -r <= up <= 2.5 * r and -r <= down <= 2.5 * r  # NaN (no lid above the iris) fails
    return 0.12 <= ratio <= 0.40 and 0.15 <= t <= 0.85 and lids_ok


def _visible(image: np.ndarray, eyes: dict[str, EyeLandmarks], opts: AnalysisOptions) -> dict[str, EyeLandmarks]:
    """The eyes without the covered ones (not measured, like an eye out of frame); rejects if none is left."""
    hidden = occluded_eyes({side: eye_spread(image, eye) for side, eye in eyes.items()}, opts.quality)
    return {side: eye for side, eye in eyes.items() if side not in hidden}


def _check_open(result: Measurements, eyes: dict[str, EyeLandmarks], opts: AnalysisOptions) -> None:
    ratios = {
        side: open_ratio(m.fissure_height_mm / result.scale.mm_per_px, eyes[side].width)
        for side, m in result.eyes.items()
    }
    check_eyes_open(ratios, opts.quality)

