"""One instance through the pipeline: check -> de-identify -> decode -> mask -> encode -> route.

Everything that can go wrong raises :class:`Quarantined` with an administrator-readable reason (no PHI).
The original pixels never leave this function: the output's pixels come only from a masker, and a
masker failure is quarantined, or blanked when ``pixels.on_failure = "blank"``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from digimask.config.settings import Settings
from digimask.pipeline.decode import decode
from digimask.pipeline.deidentify import Deidentifier
from digimask.pipeline.encode import encode
from digimask.pipeline.pixels import BlankMasker, MaskingFailed, PixelMasker, create_masker
from digimask.pipeline.pseudonym import Pseudonymizer
from digimask.pipeline.route import Router

log = logging.getLogger(__name__)
# pydicom warns about malformed values by quoting them: header values may be PHI, so never log them.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

SUPPORTED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
}


class Quarantined(Exception):
    """The instance cannot be released; ``reason`` is safe to log and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Processed:
    dataset: Dataset
    destinations: list[str]
    pseudo_patient_id: str
    notes: dict[str, Any] = field(default_factory=dict)


class Processor:
    """Holds the stages' state (masker, keys); one per worker thread (maskers may own a GL context)."""

    def __init__(self, settings: Settings, masker: PixelMasker | None = None) -> None:
        self.settings = settings
        pseudo = Pseudonymizer(settings.deid.key(), settings.deid.uid_root)
        self.deidentify = Deidentifier(settings.deid.options, pseudo, settings.deid.date_shift_max_days)
        self.masker = masker or create_masker(settings.pixels.masker, settings.pixels.options)
        self.router = Router(settings.routes)

    def process(self, ds: Dataset, calling_ae: str = "", called_ae: str = "", *, route: bool = True) -> Processed:
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class not in SUPPORTED_SOP_CLASSES:
            raise Quarantined(f"unsupported SOP class {sop_class or '(missing)'}")
        if not ds.get("SOPInstanceUID"):
            raise Quarantined("missing SOP Instance UID")
        destinations = self.router.destinations(ds, calling_ae, called_ae) if route else []
        if route and not destinations:
            raise Quarantined("no routing rule matched")
        try:
            frames = decode(ds, self.settings.storage.max_pixels)
            deid = self.deidentify(ds)
        except MaskingFailed as exc:
            raise Quarantined(exc.reason) from None
        except Exception as exc:  # a malformed header can fail anywhere in pydicom
            # only the type: the message of a header-parsing error may quote a value (PHI)
            raise Quarantined(f"malformed dataset ({type(exc).__name__})") from None
        masker, notes = self.masker, {}
        try:
            masked, params = self._mask(masker, frames.rgb, deid.dataset)
        except MaskingFailed as exc:
            if self.settings.pixels.on_failure != "blank":
                raise Quarantined(f"masking failed: {exc.reason}") from None
            masker, notes["mask_failure"] = BlankMasker(), exc.reason
            masked, params = self._mask(masker, frames.rgb, deid.dataset)
        out = encode(
            deid, masked, monochrome=frames.monochrome, bits_stored=frames.bits_stored,
            masker_name=masker.name, cleans_recognizable_features=masker.cleans_recognizable_features,
            params=params,
        )
        return Processed(out, destinations, deid.pseudo_patient_id, notes)

    @staticmethod
    def _mask(masker: PixelMasker, frames: np.ndarray, ds: Dataset) -> tuple[np.ndarray, dict | None]:
        out, params = [], None
        for frame in frames:
            try:
                result = masker.mask(frame, ds)
            except MaskingFailed:
                raise
            except Exception as exc:  # any masker bug must fail closed, never pass pixels through
                raise MaskingFailed(f"{type(exc).__name__} in masker {masker.name}") from None
            pixels = np.asarray(result.pixels)
            if pixels.shape != frame.shape or pixels.dtype != np.uint8:
                raise MaskingFailed(f"masker {masker.name} returned {pixels.dtype}{pixels.shape}, expected uint8{frame.shape}")
            if np.array_equal(pixels, frame) and frame.std() > 0:
                raise MaskingFailed(f"masker {masker.name} returned the original pixels")
            out.append(pixels)
            params = params or (dict(result.params) if result.params is not None else None)
        return np.stack(out), params


def read(path: Path) -> Dataset:
    """Read a DICOM file, tolerating a missing preamble/meta (as in the wild); clear error otherwise."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise Quarantined(f"unreadable DICOM file ({type(exc).__name__}: {str(exc)[:120]})") from None
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare dataset without meta: record what was parsed
        implicit, little = ds.original_encoding
        if little:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds


def process_file(path: Path, settings: Settings, processor: Processor | None = None) -> Dataset:
    """File mode (``digimask mask IN OUT``): de-identify and mask one file without routing."""
    processor = processor or Processor(settings)
    return processor.process(read(path), route=False).dataset
