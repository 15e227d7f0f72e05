"""Clips and multi-frame/video DICOM instances for the tests, built from a package photo (the modality's side).

``clip`` moves the astronaut photo by a known amount per frame (a head jitter of whole pixels, plus an
optional lid drop: a partial blink whose true size is known, from ``evaluation.eye_warps``).
``video_photographic`` encodes frames as a camera would (H.264 or MPEG-2 with FFmpeg's own encoders, by
PyAV) into a Video Photographic Image; ``multiframe_sc`` gives a Multi-frame True Color SC image.
"""
from __future__ import annotations

import io
from fractions import Fraction

import av
import dicom_factory as f
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, MPEG4HP41, ExplicitVRLittleEndian
from skimage.transform import resize

VIDEO = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
MFSC = "1.2.840.10008.5.1.4.1.1.7.4"


def small(image: np.ndarray, side: int = 256) -> np.ndarray:
    return (resize(image, (side, side), anti_aliasing=True) * 255).round().astype(np.uint8)


def jittered(image: np.ndarray, n: int, px: int = 2, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of ``image`` shifted by random whole pixels (up to ``px``), edges replicated."""
    rng = np.random.default_rng(seed)
    pad = np.pad(image, ((px, px), (px, px), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    out = []
    for _ in range(n):
        dy, dx = rng.integers(-px, px + 1, size=2)
        out.append(np.ascontiguousarray(pad[px + dy:px + dy + h, px + dx:px + dx + w]))
    return out


def encode_stream(frames: list[np.ndarray], rate: Fraction, codec: str = "libx264") -> bytes:
    """The bare stream a camera puts in Pixel Data: H.264 Annex B (``libx264``) or MPEG-2 video."""
    buf = io.BytesIO()
    container = av.open(buf, mode="w", format="h264" if codec == "libx264" else "mpeg2video")
    stream = container.add_stream(codec, rate=rate)
    h, w = frames[0].shape[:2]
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "16", "profile": "high", "level": "4.1", "threads": "1"}
    else:
        stream.bit_rate = 8_000_000
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    return buf.getvalue()


def _cine(ds: Dataset, n: int, rate: float) -> None:
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = f"{1000.0 / rate:.6g}"
    ds.CineRate = round(rate)
    ds.RecommendedDisplayFrameRate = round(rate)
    ds.StartTrim, ds.StopTrim = 1, n
    ds.ActualFrameDuration = round(1000 / rate)


def video_photographic(name: str, frames: list[np.ndarray], rate: float = 30.0, codec: str = "libx264",
                       data: bytes | None = None) -> Dataset:
    """Video Photographic Image Storage, MPEG-4 AVC/H.264 High Profile 4.1 or MPEG-2 MP@ML."""
    ds = f._base(VIDEO, name, frames[0], 1)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41 if codec == "libx264" else MPEG2MPML
    ds.Modality = "XC"
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_14496_10" if codec == "libx264" else "ISO_13818_2"
    ds.AcquisitionContextSequence = []
    ds.Laterality = ""
    ds.AnatomicRegionSequence = [f._code("81745001", "SCT", "Eye")]
    _cine(ds, len(frames), rate)
    ds.PixelData = encapsulate([data if data is not None else encode_stream(frames, Fraction(rate).limit_denominator(1001), codec)],
                               has_bot=False)
    ds["PixelData"].VR = "OB"
    return ds


def multiframe_sc(name: str, frames: list[np.ndarray], rate: float | None = 30.0) -> Dataset:
    """Multi-frame True Color Secondary Capture, uncompressed RGB (with Cine timing unless ``rate`` is None)."""
    ds = f._base(MFSC, name, frames[0], 1)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.Laterality = ""  # Type 2C: both eyes
    ds.PhotometricInterpretation = "RGB"
    if rate is None:
        ds.NumberOfFrames = len(frames)
        ds.FrameIncrementPointer = 0x00200013  # Instance Number: no timing
    else:
        _cine(ds, len(frames), rate)
    ds.PixelData = np.ascontiguousarray(np.stack(frames)).tobytes()
    return ds


def multiframe_op(name: str, frames: list[np.ndarray], rate: float = 30.0) -> Dataset:
    """Ophthalmic Photography 8 Bit with several frames (a camera's burst), uncompressed RGB, Cine timing."""
    ds = f.op8(name, frames[0])
    _cine(ds, len(frames), rate)
    ds.PixelData = np.ascontiguousarray(np.stack(frames)).tobytes()
    return ds
