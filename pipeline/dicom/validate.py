"""Is a dataset usable? At intake (the received header, pixels not decoded) and before an output is queued
(the Type 1 and Type 2 attributes of its IOD's mandatory modules, generated ``iod_required.json``; inside
sequence items, the Types, Enumerated Values and VRs the standard gives, generated ``iod_rules.json``).

Reasons name attributes by keyword or tag, never by value (no PHI).
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pydicom
from digimask.pipeline.deid.profile import iod_required, iod_types
from digimask.pipeline.errors import Quarantined
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
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
    """Check a derived output against its IOD before it is queued: add any missing Type 2 attribute empty
    (the node may write those), at the top level of the mandatory modules and inside sequence items, and
    raise :class:`Quarantined` naming the Type 1 attributes that are missing or empty, and any attribute
    that breaks the generated rules (``iod_rules.json``: item Types, the Code Sequence Macro, Enumerated
    Values, VRs) or holds characters outside its character repertoire (PS3.5 6.1). SOP classes without a
    generated table are not checked here."""
    sop_class = str(ds.get("SOPClassUID", ""))
    types = iod_required(sop_class)
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
    if not types:
        return
    problems: list[str] = []
    try:
        _check_items(ds, (), _Rules.of(sop_class), {f"{t:08X}": ty for t, ty in iod_types(sop_class).items()},
                     _repertoire(ds, ("ascii",)), problems)
    except Exception as exc:  # a value pydicom cannot convert: the output is not valid either
        problems.append(f"unreadable attribute ({type(exc).__name__})")
    problems += _absent_frame_pointers(ds)
    if problems:
        raise Quarantined(f"output fails its IOD's rules: {'; '.join(problems[:4])}"
                          + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""))


@dataclass(frozen=True)
class _Rules:
    """One IOD's generated rules (``iod_rules.json``): Types inside each sequence's items by the sequence's
    path of tags, and Enumerated Values by attribute path, per value number ("" for every value)."""

    items: dict[str, dict[str, str]]
    enums: dict[str, list[dict[str, list[str]]]]

    @staticmethod
    @cache
    def of(sop_class_uid: str) -> "_Rules":
        raw = _rules_table().get(sop_class_uid, {"items": {}, "enums": {}})
        return _Rules(raw["items"], raw["enums"])


@cache
def _rules_table() -> dict[str, dict]:
    return json.loads(resources.files("digimask.pipeline.deid").joinpath("standard/iod_rules.json").read_text())


_CODE_VALUES = ("00080100", "00080119", "00080120")  # Code Value, Long Code Value, URN Code Value
_NUMERIC_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "IS"}


def _check_items(ds: Dataset, path: tuple[str, ...], rules: _Rules, types: dict[str, str],
                 encodings: tuple[str, ...], problems: list[str]) -> None:
    """Every attribute of ``ds`` (the output, or an item at ``path``): the VR the standard gives it, not
    empty if its Type is 1 or 1C, its Enumerated Values, its characters in the repertoire of ``encodings``;
    every item of its sequences: the item's Type 1 attributes present and not empty (Type 2 added empty),
    and the Code Sequence Macro's conditions."""
    for elem in ds:
        tag = int(elem.tag)
        if elem.tag.is_private or tag & 0xFFFF == 0:
            continue
        key = f"{tag:08X}"
        where = "/".join([*(_name(int(p, 16)) for p in path), _name(tag)])
        if dictionary_has_tag(tag):
            allowed = dictionary_VR(tag).split(" or ")
            if elem.VR not in allowed:
                problems.append(f"{where} has VR {elem.VR}, not {' or '.join(allowed)}")
                continue
        if types.get(key) in ("1", "1C") and elem.is_empty:
            problems.append(f"{where} is empty (Type {types[key]})")
        _check_enums(elem, rules.enums.get("/".join([*path, key]), ()), where, problems)
        allowed = _repertoire_of(elem, encodings)
        if allowed and not _in_repertoire(elem, allowed):
            problems.append(f"{where} holds characters outside its repertoire"
                            f" ({'default' if allowed == ('ascii',) else 'SpecificCharacterSet'})")
        if elem.VR == "SQ":
            inner = (*path, key)
            item_types = rules.items.get("/".join(inner), {})
            for item in elem.value:
                _check_item(item, item_types, where, problems)
                _check_items(item, inner, rules, item_types, _repertoire(item, encodings), problems)


_TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "UC", "PN"}  # PS3.5 6.1.2.3: the only VRs SpecificCharacterSet extends
_DEFAULT_ONLY_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}


def _repertoire(ds: Dataset, inherited: tuple[str, ...]) -> tuple[str, ...]:
    """Python codecs of the repertoire that ``ds`` (the output, or an item that may declare its own)
    declares; the default repertoire (ISO-IR 6) is ASCII, where pydicom reads it leniently as Latin-1."""
    if "SpecificCharacterSet" not in ds:
        return inherited
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codecs = convert_encodings(ds.SpecificCharacterSet or None)
    return tuple("ascii" if c == default_encoding else c for c in codecs)


def _repertoire_of(elem: DataElement, encodings: tuple[str, ...]) -> tuple[str, ...] | None:
    """The codecs ``elem``'s characters must fit: the declared ``encodings`` for text VRs, ASCII for the
    VRs whose repertoire is always the default; None for values that are not character strings."""
    return encodings if elem.VR in _TEXT_VRS else ("ascii",) if elem.VR in _DEFAULT_ONLY_VRS else None


def _in_repertoire(elem: DataElement, allowed: tuple[str, ...]) -> bool:
    """Whether every character of a string value can be written in ``allowed`` (with code extensions, any
    one of them per character). pydicom would otherwise write such a value as Latin-1 bytes, or as
    replacement characters."""
    if elem.is_empty:
        return True
    values = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
    return all(_encodable(ch, allowed) for v in values if not isinstance(v, bytes) for ch in str(v) if not ch.isascii())


def _encodable(char: str, codecs: tuple[str, ...]) -> bool:
    for codec in codecs:
        try:
            char.encode(codec)
            return True
        except (UnicodeError, LookupError):
            continue
    return False


def _check_item(item: Dataset, item_types: dict[str, str], where: str, problems: list[str]) -> None:
    for key, attr_type in item_types.items():
        tag = int(key, 16)
        if attr_type == "1" and (tag not in item or item[tag].is_empty):
            problems.append(f"{where}/{_name(tag)} missing (Type 1)")
        elif attr_type == "2" and tag not in item:
            vr = dictionary_VR(tag)
            item.add(DataElement(tag, vr, Sequence() if vr == "SQ" else None))
    if item_types.get("00080104") == "1" and "00080100" in item_types:  # a Code Sequence Macro item (PS3.3 8.8)
        values = [k for k in _CODE_VALUES if int(k, 16) in item and not item[int(k, 16)].is_empty]
        if len(values) != 1:
            problems.append(f"{where} item has {len(values)} of Code Value, Long Code Value, URN Code Value (1 needed)")
        if values and values[0] != "00080120" and (0x00080102 not in item or item[0x00080102].is_empty):
            problems.append(f"{where}/CodingSchemeDesignator missing (Type 1C)")


def _check_enums(elem: DataElement, alternatives: Collection[dict[str, list[str]]], where: str, problems: list[str]) -> None:
    if not alternatives or elem.is_empty:
        return
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    for rule in alternatives:  # each module that enumerates the attribute: a value must be in each list
        for number, allowed in rule.items():
            picked = values if number == "" else values[int(number) - 1:int(number)]
            if any(not _enumerated(v, allowed, elem.VR) for v in picked):
                problems.append(f"{where}{'' if number == '' else f' value {number}'} not an Enumerated Value")
                return


def _enumerated(value: object, allowed: list[str], vr: str) -> bool:
    if vr in _NUMERIC_VRS:  # the standard writes binary values as 0 or 0001H
        try:
            return int(str(value)) in {_number(a) for a in allowed}
        except ValueError:
            return False
    return str(value).strip() in allowed


def _absent_frame_pointers(ds: Dataset) -> list[str]:
    """Frame Increment Pointer (PS3.3 C.7.6.6) names the attribute(s) that step through the frames: each
    must be in the dataset (dciodvfy: "value is not present in dataset")."""
    if "FrameIncrementPointer" not in ds or ds["FrameIncrementPointer"].VR != "AT":
        return []
    value = ds["FrameIncrementPointer"].value
    pointers = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [f"FrameIncrementPointer points at {_name(int(t))}, which is absent" for t in pointers
            if t is not None and int(t) not in ds]


def _number(text: str) -> int | None:
    try:
        return int(text[:-1], 16) if text.endswith("H") else int(text)
    except ValueError:
        return None


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
