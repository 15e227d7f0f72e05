"""Video in and out with PyAV (FFmpeg in its wheel): decode a compressed stream to RGB frames one at a time,
and encode RGB frames to H.264 as they come, so memory stays flat whatever the clip's length.

DICOM carries MPEG video as the bare bit stream in encapsulated Pixel Data (PS3.5 8.2.5-8.2.8): an
H.264 Annex B byte stream or an MPEG-2 video stream. The encoder writes MPEG-4 AVC/H.264 High Profile /
Level 4.1 (1.2.840.10008.1.2.4.102), 4:2:0, with x264 at constant rate factor ``crf`` (default 12: visually
lossless; High Profile has no lossless mode, which needs the High 4:4:4 Predictive profile).
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from digimask.pipeline.errors import Quarantined
from pydicom.uid import (
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP41F,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
)

# Transfer syntax -> FFmpeg demuxer of the bare stream in Pixel Data.
VIDEO_TRANSFER_SYNTAXES: dict[str, str] = {
    **{uid: "mpegvideo" for uid in (MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF)},
    **{uid: "h264" for uid in (MPEG4HP41, MPEG4HP41F, MPEG4HP41BD, MPEG4HP41BDF, MPEG4HP422D, MPEG4HP422DF,
                               MPEG4HP423D, MPEG4HP423DF, MPEG4HP42STEREO, MPEG4HP42STEREOF)},
}
OUTPUT_TRANSFER_SYNTAX = MPEG4HP41
MAX_LEVEL41_MACROBLOCKS = 8192  # H.264 Level 4.1 frame size limit (A.3.1, Table A-1): 1920 x 1088
DEFAULT_CRF = 12


@dataclass(frozen=True)
class VideoInfo:
    frames: int | None  # from the container, None when it does not say (a bare stream)
    rate: Fraction  # frames per second
    width: int
    height: int


def probe(source: bytes | Path, demuxer: str | None = None) -> VideoInfo:
    """The first video stream's size, frame rate and (when the container records it) frame count."""
    with _open(source, demuxer) as container:
        stream = _video_stream(container)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(stream.frames or None, Fraction(rate), stream.codec_context.width, stream.codec_context.height)


def iter_frames(source: bytes | Path, demuxer: str | None = None) -> Iterator[np.ndarray]:
    """Each frame as ``(rows, columns, 3)`` uint8 RGB, in display order; a broken stream raises
    :class:`~digimask.pipeline.errors.Quarantined`."""
    try:
        with _open(source, demuxer) as container:
            stream = _video_stream(container)
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except Quarantined:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise Quarantined(f"cannot decode video ({type(exc).__name__})") from None


class H264Writer:
    """Encode RGB frames to H.264 (High Profile, yuv420p) as they are written.

    ``dest`` is a path (container from its suffix, e.g. ``.mp4``; no audio, no metadata of the source) or,
    with ``raw=True``, a binary file that receives the bare Annex B byte stream (what DICOM's encapsulated
    Pixel Data holds: Level 4.1, so at most 1920x1080).
    """

    def __init__(self, dest: Path | BinaryIO, width: int, height: int, rate: Fraction, *, raw: bool = False,
                 crf: int = DEFAULT_CRF) -> None:
        if width % 2 or height % 2:
            raise Quarantined(f"video frame {width}x{height}: H.264 4:2:0 needs even rows and columns")
        if raw and ((width + 15) // 16) * ((height + 15) // 16) > MAX_LEVEL41_MACROBLOCKS:
            raise Quarantined(f"video frame {width}x{height} exceeds H.264 Level 4.1 (1920x1080)")
        self.frames = 0
        self._container = av.open(dest, mode="w", format="h264" if raw else None)
        rate = Fraction(rate).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        # threads=1: x264's output is then the same bytes on every machine for the same frames
        self._stream.options = {"crf": str(crf), "preset": "medium", "profile": "high", "threads": "1",
                                **({"level": "4.1"} if raw else {})}
        self._stream.codec_context.time_base = 1 / rate

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        self._container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._container.close()


@dataclass(frozen=True)
class EncodedVideo:
    """A masked clip as DICOM Pixel Data holds it: the bare H.264 stream."""

    data: bytes
    frames: int
    rows: int
    columns: int
    transfer_syntax: str = OUTPUT_TRANSFER_SYNTAX


def encode_h264(frames: Iterable[np.ndarray], width: int, height: int, rate: float | Fraction,
                crf: int = DEFAULT_CRF) -> EncodedVideo:
    """Encode ``frames`` as they come into the bare H.264 stream of an :class:`EncodedVideo`."""
    buf = io.BytesIO()
    with H264Writer(buf, width, height, Fraction(rate), raw=True, crf=crf) as writer:
        for rgb in frames:
            writer.write(rgb)
    return EncodedVideo(buf.getvalue(), writer.frames, height, width)


def _open(source: bytes | Path, demuxer: str | None):
    try:
        return av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source),
                       format=demuxer)
    except (av.FFmpegError, OSError) as exc:
        raise Quarantined(f"cannot open video ({type(exc).__name__})") from None


def _video_stream(container):
    if not container.streams.video:
        raise Quarantined("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream
