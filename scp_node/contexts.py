"""Presentation contexts the node accepts and proposes."""
from __future__ import annotations

from digimask.pipeline.dicom.sop import SUPPORTED_SOP_CLASSES
from digimask.pipeline.dicom.video import OUTPUT_TRANSFER_SYNTAX, VIDEO_TRANSFER_SYNTAXES
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    VideoPhotographicImageStorage,
)
from pynetdicom.presentation import PresentationContext, build_context

VERIFICATION = "1.2.840.10008.1.1"
# Uncompressed, and the compressed syntaxes that pydicom and its installed plugins decode
# (pylibjpeg-libjpeg: JPEG; pyjpegls: JPEG-LS; pylibjpeg-openjpeg: JPEG 2000; pydicom itself: RLE).
ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless,
    JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
]


# Video Photographic also in MPEG-2 and MPEG-4 AVC/H.264 (decoded by PyAV's FFmpeg: pipeline/dicom/video.py).
VIDEO_SOP_CLASSES = {VideoPhotographicImageStorage}


def scp_contexts() -> list[PresentationContext]:
    return [build_context(VERIFICATION)] + [
        build_context(uid, ACCEPTED_TRANSFER_SYNTAXES + (list(VIDEO_TRANSFER_SYNTAXES) if uid in VIDEO_SOP_CLASSES else []))
        for uid in SUPPORTED_SOP_CLASSES
    ]


def scu_contexts(sop_classes: set[str]) -> list[PresentationContext]:
    """The node always sends what it wrote: Explicit VR Little Endian, or H.264 for a video (in a context of
    its own: a PACS accepts one transfer syntax per context, and would pick the uncompressed one)."""
    return [build_context(uid, [ts]) for uid in sorted(sop_classes)
            for ts in [ExplicitVRLittleEndian] + ([OUTPUT_TRANSFER_SYNTAX] if uid in VIDEO_SOP_CLASSES else [])]
