"""The SOP classes the node accepts, masks and forwards (storage SOP class UIDs from pydicom)."""
from __future__ import annotations

from pydicom.uid import (
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    OphthalmicPhotography8BitImageStorage,
    OphthalmicPhotography16BitImageStorage,
    SecondaryCaptureImageStorage,
    VideoPhotographicImageStorage,
    VLPhotographicImageStorage,
)

SUPPORTED_SOP_CLASSES: dict[str, str] = {
    uid: uid.name
    for uid in (
        OphthalmicPhotography8BitImageStorage,
        OphthalmicPhotography16BitImageStorage,
        VLPhotographicImageStorage,
        SecondaryCaptureImageStorage,
        MultiFrameTrueColorSecondaryCaptureImageStorage,
        VideoPhotographicImageStorage,
    )
}
