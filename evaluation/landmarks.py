"""dlib's face detector, landmark predictors and face-recognition network, loaded from the model files
that ship in ``face_recognition_models`` (loaded directly: the ``face_recognition`` library is not needed).

Evaluation only: the 68-point predictor was trained on iBUG 300-W, whose terms exclude commercial use, so
nothing here may be used in the masking path.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dlib
import numpy as np

# iBUG 68-point numbering (0-based): brows 17-26, right eye (image left) 36-41, left eye 42-47.
BROWS = slice(17, 27)
EYES = slice(36, 48)
OUTER_CANTHI = (36, 45)


def model_path(filename: str) -> Path:
    """Path of a model file inside the installed ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install face_recognition_models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise RuntimeError(f"model file {filename} missing from face_recognition_models")
    return path


@cache
def detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@cache
def predictor(points: int) -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path(f"shape_predictor_{points}_face_landmarks.dat")))


@dataclass(frozen=True)
class Face:
    """One detected face: its box, the 5-point shape used to align the recognizer's face chip, and
    68 landmarks (x, y) used to place eye regions."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    shape5: dlib.full_object_detection
    points68: np.ndarray  # (68, 2) float


def detect_face(image: np.ndarray, upsample: int = 1) -> Face | None:
    """The largest frontal face in an RGB uint8 image, or None."""
    rects = detector()(np.ascontiguousarray(image), upsample)
    if not rects:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape68 = predictor(68)(image, rect)
    points = np.array([(p.x, p.y) for p in shape68.parts()], dtype=float)
    return Face((rect.left(), rect.top(), rect.right(), rect.bottom()), predictor(5)(image, rect), points)


def periocular_box(points68: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Box (left, top, right, bottom) around both eyes and brows, padded: the eye region that a cropped
    external-eye photograph keeps."""
    pts = np.vstack([points68[BROWS], points68[EYES]])
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    eyes = points68[EYES]
    pad_x = 0.12 * (x1 - x0)
    pad_below = 0.6 * (eyes[:, 1].max() - eyes[:, 1].min()) + 0.05 * (x1 - x0)
    h, w = shape[:2]
    return (
        int(max(0, np.floor(x0 - pad_x))),
        int(max(0, np.floor(y0 - 0.05 * (x1 - x0)))),
        int(min(w, np.ceil(x1 + pad_x))),
        int(min(h, np.ceil(y1 + pad_below))),
    )


def keep_box(image: np.ndarray, box: tuple[int, int, int, int], fill: int = 0) -> np.ndarray:
    """A copy of ``image`` with everything outside ``box`` set to ``fill``."""
    left, top, right, bottom = box
    out = np.full_like(image, fill)
    out[top:bottom, left:right] = image[top:bottom, left:right]
    return out


def eye_openings(points68: np.ndarray, mm_per_px: float | None = None) -> dict[str, float]:
    """An independent check of lid position from dlib's landmarks: each eye's aspect ratio (mean of the
    two lid-to-lid heights over the corner-to-corner width; Soukupova & Cech, CVWW 2016), that mean
    height in mm where a scale is given, and the tilt of the line through the outer canthi (degrees)."""
    out = {}
    for side, first in (("right", 36), ("left", 42)):  # the patient's right eye is on the image's left
        p = points68[first:first + 6]
        height = (np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / 2
        out[f"{side}.dlib_eye_aspect"] = float(height / np.linalg.norm(p[0] - p[3]))
        if mm_per_px:
            out[f"{side}.dlib_fissure_height_mm"] = float(height * mm_per_px)
    dx, dy = points68[OUTER_CANTHI[1]] - points68[OUTER_CANTHI[0]]
    out["dlib_canthal_tilt_deg"] = float(np.degrees(np.arctan2(dy, dx)))
    return out
