"""Decode an instance's pixel data into display-ready RGB frames for the maskers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from digimask.pipeline.errors import Quarantined
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut


@dataclass(frozen=True)
class Frames:
    rgb: np.ndarray  # (frames, rows, columns, 3) uint8
    monochrome: bool  # the source was greyscale: encode back to MONOCHROME2
    bits_stored: int  # of the source; the encoder writes this depth back


def decode(ds: Dataset, max_pixels: int) -> Frames:
    """Decode every frame to 8-bit RGB; raises :class:`~digimask.pipeline.errors.Quarantined` with a clear reason."""
    if "PixelData" not in ds:
        raise Quarantined("no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * cols * n > max_pixels:
        raise Quarantined(f"image too large: {rows}x{cols}x{n} frames exceeds storage.max_pixels={max_pixels}")
    try:
        arr = ds.pixel_array  # pydicom 3 converts YCbCr (YBR_*) to RGB by default
    except Exception as exc:  # decoder plugins raise many types; all mean the same here
        raise Quarantined(f"cannot decode pixel data ({type(exc).__name__}: {str(exc)[:120]})") from None
    pi = str(ds.get("PhotometricInterpretation", ""))
    samples = int(ds.get("SamplesPerPixel", 1))
    if n == 1:
        arr = arr[np.newaxis]
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        samples = 3
    bits = int(ds.get("BitsStored", 8))
    arr = _to_uint8(arr, bits if pi != "PALETTE COLOR" else 16 if arr.dtype == np.uint16 else 8)
    if samples == 1:
        if pi == "MONOCHROME1":
            arr = 255 - arr
        return Frames(np.repeat(arr[..., np.newaxis], 3, axis=-1), True, bits)
    return Frames(np.ascontiguousarray(arr), False, bits)


def _to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "ui":
        raise Quarantined(f"unsupported pixel type {arr.dtype}")
    signed = arr.dtype.kind == "i"
    arr = arr.astype(np.int64)
    if signed:  # two's complement data: shift the stored range to start at zero
        arr = arr + (1 << (bits - 1))
    return (arr >> max(0, bits - 8)).clip(0, 255).astype(np.uint8)
