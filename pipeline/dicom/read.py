"""Read a stored DICOM file into a dataset (header and pixels, not yet decoded)."""
from __future__ import annotations

from pathlib import Path

import pydicom
from digimask.pipeline.errors import Quarantined
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian


def read(path: Path) -> Dataset:
    """Read a DICOM file, tolerating a missing preamble/meta (as in the wild); clear reason otherwise."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise Quarantined(f"unreadable DICOM file ({type(exc).__name__})") from None  # a message may quote values
    if "TransferSyntaxUID" not in ds.file_meta:  # a bare dataset without meta: record what was parsed
        implicit, little = ds.original_encoding
        if little:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds
