"""Comparator maskers that exist only for evaluation: the original (upper bound of what survives), a black
bar over the eyes, and a crop to the eye region (the "cropping" comparator of Yang et al., Nat Med 2022).

They follow ``digimask.pipeline.mask.maskers.PixelMasker`` and keep the image's size: the crop blacks out
everything outside the eye region rather than changing the geometry, so the original's coordinates still
apply. Eye positions come from dlib's 68 landmarks (evaluation only, see ``landmarks``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from digimask.evaluation.landmarks import (
    EYES,
    OUTER_CANTHI,
    Face,
    detect_face,
    keep_box,
    periocular_box,
)
from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.mask.maskers import MaskResult, PixelMasker
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset


class OriginalMasker:
    """The unmasked image: everything survives, identity included."""

    name = "original"
    cleans_recognizable_features = False

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        return MaskResult(image.copy())


class EyeBarMasker:
    """A black bar over both eyes, along the line between the outer canthi."""

    name = "eye_bar"
    cleans_recognizable_features = False

    def __init__(self, width: float = 1.5, height: float = 0.45) -> None:
        self.width = width  # bar length / outer-canthus distance
        self.height = height  # bar height / outer-canthus distance

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        face = _face(image)
        right, left = face.points68[OUTER_CANTHI[0]], face.points68[OUTER_CANTHI[1]]
        axis = left - right
        span = float(np.hypot(*axis))
        u = axis / span
        v = np.array([-u[1], u[0]])
        centre = face.points68[EYES].mean(axis=0)
        a, b = 0.5 * self.width * span, 0.5 * self.height * span
        corners = [centre + sx * a * u + sy * b * v for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        img = Image.fromarray(image)
        ImageDraw.Draw(img).polygon([tuple(c) for c in corners], fill=(0, 0, 0) if image.ndim == 3 else 0)
        return MaskResult(np.asarray(img).copy())


class EyeCropMasker:
    """Only the eye region (both eyes and brows) is kept; the rest of the image is black."""

    name = "eye_crop"
    cleans_recognizable_features = False

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        face = _face(image)
        return MaskResult(keep_box(image, periocular_box(face.points68, image.shape)))


def _face(image: np.ndarray) -> Face:
    if image.dtype != np.uint8 or image.ndim != 3:
        raise MaskingFailed("needs an RGB uint8 image")
    face = detect_face(image)
    if face is None:
        raise MaskingFailed("no face found to place the eye region")
    return face


BASELINES: dict[str, Callable[..., PixelMasker]] = {
    "original": OriginalMasker,
    "eye_bar": EyeBarMasker,
    "eye_crop": EyeCropMasker,
}
