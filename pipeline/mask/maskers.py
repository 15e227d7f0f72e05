"""The pixel stage: what replaces the patient's image.

A masker takes one decoded frame (``H x W x 3`` uint8 RGB, or ``H x W`` for monochrome) and the
de-identified dataset, and returns new pixels of the same shape, plus optional parameters that the
encode stage writes to the DIGIMASK private block. A masker that cannot mask raises
:class:`MaskingFailed`; the node then quarantines (or blanks, if configured) and never forwards the
original pixels.

Only maskers with ``cleans_recognizable_features = True`` de-identify the image. ``blur`` and
``pixelate`` are kept for comparison: face recognition still identifies blurred faces.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageFilter
from pydicom.dataset import Dataset

from digimask.pipeline.errors import MaskingFailed


@dataclass(frozen=True)
class MaskResult:
    pixels: np.ndarray
    params: Mapping[str, Any] | None = None  # JSON-serialisable; goes to the private block
    notes: Mapping[str, Any] = field(default_factory=dict)  # for the audit trail; never PHI


# A de-identifying masker's output this correlated with its input (|Pearson r| over the frame) still shows
# the patient: a copy with noise reads 0.996, blur over 1% of the image 0.90, the digital mask about 0.
PASS_THROUGH_R = 0.8


class PixelMasker(Protocol):
    name: str
    cleans_recognizable_features: bool

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult: ...


class BlankMasker:
    """A uniform image of the same size: removes everything, keeps nothing clinical."""

    name = "blank"
    cleans_recognizable_features = True

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        return MaskResult(np.full_like(image, self.value))


class BlurMasker:
    """Gaussian blur. NOT de-identifying: for comparison only."""

    name = "blur"
    cleans_recognizable_features = False

    def __init__(self, sigma_fraction: float = 0.02) -> None:
        self.sigma_fraction = sigma_fraction  # of the image's shorter side

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        radius = max(1.0, self.sigma_fraction * min(image.shape[:2]))
        blurred = _from_array(image).filter(ImageFilter.GaussianBlur(radius))
        return MaskResult(_to_array(blurred, image))


class PixelateMasker:
    """Mosaic of ``blocks`` cells along the shorter side. NOT de-identifying: for comparison only."""

    name = "pixelate"
    cleans_recognizable_features = False

    def __init__(self, blocks: int = 16) -> None:
        self.blocks = blocks

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        h, w = image.shape[:2]
        cell = max(1, min(h, w) // self.blocks)
        small = _from_array(image).resize((max(1, w // cell), max(1, h // cell)), Image.BOX)
        return MaskResult(_to_array(small.resize((w, h), Image.NEAREST), image))


def mask_frame(masker: PixelMasker, frame: np.ndarray, ds: Dataset) -> MaskResult:
    """One frame through ``masker``, failing closed: a masker bug, a wrong shape or type, the original
    pixels, or (for a de-identifying masker) pixels that still correlate with them raise MaskingFailed."""
    try:
        result = masker.mask(frame, ds)
    except MaskingFailed:
        raise
    except Exception as exc:  # any masker bug must fail closed, never pass pixels through
        raise MaskingFailed(f"{type(exc).__name__} in masker {masker.name}") from None
    pixels = np.asarray(result.pixels)
    if pixels.shape != frame.shape or pixels.dtype != np.uint8:
        raise MaskingFailed(f"masker {masker.name} returned {pixels.dtype}{pixels.shape}, expected uint8{frame.shape}")
    if frame.std() > 0:
        if np.array_equal(pixels, frame):
            raise MaskingFailed(f"masker {masker.name} returned the original pixels")
        r = _correlation(pixels, frame)
        if masker.cleans_recognizable_features and abs(r) > PASS_THROUGH_R:
            raise MaskingFailed(f"masker {masker.name} returned pixels that correlate with the original (r = {r:.2f})")
    return result


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float32).ravel(), b.astype(np.float32).ravel()
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x @ x) * (y @ y)))
    return float(x @ y) / denom if denom > 0 else 0.0


def _from_array(image: np.ndarray) -> Image.Image:
    if image.dtype != np.uint8:
        raise MaskingFailed(f"unsupported pixel type {image.dtype} for this masker")
    return Image.fromarray(image)


def _to_array(img: Image.Image, like: np.ndarray) -> np.ndarray:
    return np.asarray(img, dtype=like.dtype).reshape(like.shape)


# Name -> factory. Heavy maskers are imported lazily so the node starts without torch when unused.
MASKERS: dict[str, Callable[..., PixelMasker] | str] = {
    "blank": BlankMasker,
    "blur": BlurMasker,
    "pixelate": PixelateMasker,
    "digital_mask": "digimask.pipeline.mask.digital_mask:DigitalMask",
}


def create_masker(name: str, options: Mapping[str, Any] | None = None) -> PixelMasker:
    """Build the masker ``name`` with keyword ``options``; ``KeyError`` names the known maskers."""
    try:
        factory = MASKERS[name]
    except KeyError:
        raise KeyError(f"unknown masker {name!r}; known: {', '.join(sorted(MASKERS))}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(import_module(module), attr)
    return factory(**dict(options or {}))
