"""Presentation contexts the node accepts and proposes."""
from __future__ import annotations

from digimask.pipeline.dicom.sop import SUPPORTED_SOP_CLASSES
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
)
from pynetdicom.presentation import PresentationContext, build_context

VERIFICATION = "1.2.840.10008.1.1"
# Uncompressed, and the compressed syntaxes that pydicom and its installed plugins decode
# (pylibjpeg-libjpeg: JPEG; pyjpegls: JPEG-LS; pylibjpeg-openjpeg: JPEG 2000; pydicom itself: RLE).
ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless,
    JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
]


def scp_contexts() -> list[PresentationContext]:
    return [build_context(VERIFICATION)] + [
        build_context(uid, ACCEPTED_TRANSFER_SYNTAXES) for uid in SUPPORTED_SOP_CLASSES
    ]


def scu_contexts(sop_classes: set[str]) -> list[PresentationContext]:
    """The node always sends what it wrote: Explicit VR Little Endian."""
    return [build_context(uid, [ExplicitVRLittleEndian]) for uid in sorted(sop_classes)]
