"""Decode an instance's pixel data into display-ready RGB frames for the maskers.

:func:`decode` gives every frame at once (photos); :func:`stream` gives a clip's frames one at a time
(multi-frame and video instances), with its frame rate.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from digimask.pipeline.dicom import video
from digimask.pipeline.errors import Quarantined
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
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
        raise Quarantined(f"cannot decode pixel data ({type(exc).__name__})") from None  # a message may quote values
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


@dataclass(frozen=True)
class FrameStream:
    frames: Iterator[np.ndarray]  # (rows, columns, 3) uint8 RGB, one at a time; a broken stream raises Quarantined
    count: int  # NumberOfFrames; the stream is checked to hold exactly this many
    rate_hz: float | None  # from the timing attributes; None when the frames are not a time series
    rows: int
    columns: int
    monochrome: bool
    bits_stored: int
    video: bool  # MPEG-2 or H.264 in Pixel Data: the output is re-encoded as H.264


def transfer_syntax(ds: Dataset) -> str:
    return str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")


def is_clip(ds: Dataset) -> bool:
    """Several frames, or a video stream (masked as a clip by ``pipeline/mask/video.py``)."""
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or transfer_syntax(ds) in video.VIDEO_TRANSFER_SYNTAXES


def frame_rate(ds: Dataset) -> float | None:
    """Frames per second from Frame Time (ms), Cine Rate, Recommended Display Frame Rate or the mean of
    Frame Time Vector (PS3.3 C.7.6.5, C.7.6.6); ``None`` when none gives a positive rate."""
    try:
        if float(ds.get("FrameTime") or 0) > 0:
            return 1000.0 / float(ds.FrameTime)
        for kw in ("CineRate", "RecommendedDisplayFrameRate"):
            if float(ds.get(kw) or 0) > 0:
                return float(ds.get(kw))
        vector = [float(t) for t in ds.get("FrameTimeVector") or []][1:]  # the first entry is 0
        if vector and sum(vector) > 0:
            return 1000.0 * len(vector) / sum(vector)
    except (TypeError, ValueError):
        raise Quarantined("malformed frame timing attributes") from None
    return None


def stream(ds: Dataset, max_pixels: int, max_frames: int) -> FrameStream:
    """A clip's frames, decoded one at a time for video (memory stays flat), all at once otherwise."""
    ts = transfer_syntax(ds)
    if ts not in video.VIDEO_TRANSFER_SYNTAXES:
        frames = decode(ds, max_pixels)
        n, rows, cols = frames.rgb.shape[:3]
        return FrameStream(iter(frames.rgb), n, frame_rate(ds), rows, cols, frames.monochrome, frames.bits_stored, False)
    if "PixelData" not in ds:
        raise Quarantined("no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    n = int(ds.get("NumberOfFrames", 0) or 0)
    if rows * cols > max_pixels:
        raise Quarantined(f"video frame too large: {rows}x{cols} exceeds storage.max_pixels={max_pixels}")
    if not 0 < n <= max_frames:
        raise Quarantined(f"video of {n} frames (NumberOfFrames; at most video.max_frames={max_frames})")
    try:
        data = b"".join(generate_fragments(ds.PixelData))
    except Exception as exc:  # pydicom raises ValueError and friends for broken item tags
        raise Quarantined(f"cannot read the encapsulated video ({type(exc).__name__})") from None
    rate = frame_rate(ds) or float(video.probe(data, video.VIDEO_TRANSFER_SYNTAXES[ts]).rate)
    return FrameStream(_checked(video.iter_frames(data, video.VIDEO_TRANSFER_SYNTAXES[ts]), n, rows, cols),
                       n, rate, rows, cols, False, 8, True)


def _checked(frames: Iterator[np.ndarray], n: int, rows: int, cols: int) -> Iterator[np.ndarray]:
    """The decoded frames, refused as soon as they disagree with the header (count, size)."""
    count = 0
    for frame in frames:
        count += 1
        if count > n:
            raise Quarantined(f"the video holds more frames than NumberOfFrames={n}")
        if frame.shape[:2] != (rows, cols):
            raise Quarantined(f"video frame {frame.shape[1]}x{frame.shape[0]} does not match Columns x Rows {cols}x{rows}")
        yield frame
    if count < n:
        raise Quarantined(f"truncated video: {count} of NumberOfFrames={n} frames decoded")
