"""Images as the analysis and the maskers see them: loading files (photos and DICOM) and luma.

:func:`load` is the one way the command line and the evaluation read an input file: photos upright by
their EXIF orientation, DICOM files decoded to their first frame with the header's spacing and laterality,
a pixel limit for both, and a :class:`~digimask.pipeline.errors.Quarantined` reason for what cannot be read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from digimask.pipeline.errors import Quarantined
from digimask.pipeline.eyes.landmarks import Side

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})  # plain clips, decoded by pipeline/dicom/video.py
MAX_PIXELS = 100_000_000  # rows x columns (x frames): larger files are refused, not decoded
LUMA_REC601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights of R, G, B


@dataclass(frozen=True)
class Loaded:
    image: np.ndarray  # H x W x 3 uint8 RGB
    pixel_spacing_mm: float | None = None  # from a DICOM header's PixelSpacing
    laterality: Side | None = None  # from a DICOM header's ImageLaterality


def load(path: Path, max_pixels: int = MAX_PIXELS) -> Loaded:
    """Read a photo or a DICOM file (by suffix; anything else is tried as DICOM)."""
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return Loaded(_photo(Path(path), max_pixels))
    from digimask.pipeline.dicom.decode import decode
    from digimask.pipeline.dicom.header import laterality, pixel_spacing_mm
    from digimask.pipeline.dicom.read import read

    ds = read(Path(path))
    try:
        frames = decode(ds, max_pixels)
    except Quarantined:
        raise
    except Exception as exc:  # a malformed header can fail anywhere in pydicom; its message may quote PHI
        raise Quarantined(f"cannot read DICOM ({type(exc).__name__})") from None
    return Loaded(frames.rgb[0], pixel_spacing_mm(ds), laterality(ds))


def _photo(path: Path, max_pixels: int) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise Quarantined(f"image too large: {img.width}x{img.height} exceeds {max_pixels} pixels")
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB")).copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise Quarantined(f"cannot read image ({type(exc).__name__})") from None


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB image, rounded to uint8 and replicated in three channels."""
    grey = np.round(image @ np.array(LUMA_REC601)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
