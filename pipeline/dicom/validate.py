"""Is a dataset usable? At intake (the received header, pixels not decoded) and before an output is queued
(the Type 1 and Type 2 attributes of its IOD's mandatory modules, generated ``iod_required.json``).

Reasons name attributes by keyword or tag, never by value (no PHI).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
from digimask.pipeline.deid.profile import iod_required
from digimask.pipeline.errors import Quarantined
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_expected_length
from pydicom.sequence import Sequence

UNDEFINED_LENGTH = 0xFFFFFFFF
# Type 2C attributes of every accepted IOD, required (empty is allowed) unless the other attribute is sent:
# General Series Laterality (paired body parts; Image Laterality stands in), General Image Patient
# Orientation (Image Orientation (Patient) stands in)
_TYPE_2C_EMPTY = {"Laterality": "ImageLaterality", "PatientOrientation": "ImageOrientationPatient"}
_IMAGE_PIXEL = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PhotometricInterpretation")


@dataclass(frozen=True)
class Unusable:
    """Why a received dataset can never be processed. ``understood`` False: it cannot be parsed as a
    complete dataset (truncated, unreadable, no SOP UIDs); True: it parses but does not hold a usable
    image of its SOP class (no pixel data, pixel data length inconsistent with the image attributes)."""

    understood: bool
    reason: str


def check_received(path: Path, sop_class_uid: str, sop_instance_uid: str) -> Unusable | None:
    """Parse the header of a received file (pixel data is only measured, not read) and check it is usable:
    complete, with the SOP Class/Instance UIDs of the C-STORE request, and pixel data as long as Rows x
    Columns x Samples x Frames x Bits Allocated say (native), or present (encapsulated)."""
    try:
        return _check(path, sop_class_uid, sop_instance_uid)
    except OSError:
        raise
    except Exception as exc:  # values of a type pydicom did not expect: never usable, never a crash
        return Unusable(False, f"unreadable dataset ({type(exc).__name__})")


def _check(path: Path, sop_class_uid: str, sop_instance_uid: str) -> Unusable | None:
    size = path.stat().st_size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings may quote values
            ds = pydicom.dcmread(path, force=True, defer_size=4096)
            raws = [ds.get_item(tag, keep_deferred=True) for tag in ds.keys()]
    except Exception as exc:  # a malformed stream fails in many ways inside pydicom
        return Unusable(False, f"unreadable dataset ({type(exc).__name__})")
    for raw in raws:
        if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH and (
            (raw.value is None and raw.value_tell + raw.length > size)
            or (raw.value is not None and len(raw.value) < raw.length)
        ):
            return Unusable(False, f"dataset truncated in {_name(raw.tag)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sop_class, sop_uid = str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or "")
    except Exception as exc:
        return Unusable(False, f"unreadable SOP UIDs ({type(exc).__name__})")
    if not sop_class or not sop_uid:
        return Unusable(False, "missing SOP Class UID or SOP Instance UID")
    if sop_class != sop_class_uid or sop_uid != sop_instance_uid:
        return Unusable(True, "SOP Class/Instance UID differ from the C-STORE request's")
    return _check_pixels(ds, size)


def _check_pixels(ds: Dataset, size: int) -> Unusable | None:
    pixels = ds.get_item(0x7FE00010, keep_deferred=True) if 0x7FE00010 in ds else None
    if pixels is None:
        return Unusable(True, "no pixel data")
    missing = [kw for kw in _IMAGE_PIXEL if kw not in ds]
    if missing:
        return Unusable(True, f"missing image pixel attributes: {', '.join(missing)}")
    if pixels.length == UNDEFINED_LENGTH:  # encapsulated: the decoder checks the fragments
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = int(get_expected_length(ds, unit="bytes"))
    except Exception as exc:  # non-numeric or absurd image attributes
        return Unusable(True, f"image pixel attributes not usable ({type(exc).__name__})")
    if pixels.length < expected or pixels.length > expected + 1:  # + 1: padding to an even length
        return Unusable(True, f"pixel data holds {pixels.length} bytes; Rows x Columns x Samples x Frames x Bits "
                              f"Allocated need {expected}")
    return None


def complete_output(ds: Dataset) -> None:
    """Check a derived output against its IOD's mandatory modules before it is queued: add any missing Type 2
    attribute empty
    (the node may write those), and raise :class:`Quarantined` naming the Type 1 attributes that are
    missing or empty. SOP classes without a generated table are not checked here."""
    types = iod_required(str(ds.get("SOPClassUID", "")))
    missing = []
    for tag, attr_type in sorted(types.items()):
        elem = ds.get(tag)
        if attr_type == "1" and (elem is None or elem.value in (None, "", b"") or
                                 (elem.VR == "SQ" and len(elem.value) == 0)):
            missing.append(_name(tag))
        elif attr_type == "2" and elem is None:
            vr = dictionary_VR(tag)
            ds.add(DataElement(tag, vr, Sequence() if vr == "SQ" else None))
    for keyword, unless in _TYPE_2C_EMPTY.items():  # conditions the tables cannot express
        if keyword not in ds and unless not in ds:
            setattr(ds, keyword, "")
    if missing:
        raise Quarantined(f"output lacks Type 1 attribute(s) of its IOD: {', '.join(missing)}")


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
