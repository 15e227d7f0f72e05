"""Header de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile + options.

Driven by :mod:`digimask.pipeline.deid.profile` (the standard's Table E.1-1 as data). Every element, at every
sequence depth, gets the table's action; compound actions resolve by the attribute's Type in the
instance's IOD so that Type 1 attributes get dummies and Type 2 attributes zero length.

Fail closed: an attribute the table does not name is kept only if it is on the keep-list (the attributes
the accepted IODs define, where they define them; ``standard/keep.json``) or the administrator's
``deid.keep_attributes``. Unknown and retired public tags, and attributes the IOD does not define inside
a sequence, are removed and their tags reported in :attr:`Deidentified.removed`, as are kept values that
are invalid for their VR (control characters, lengths, formats). Private elements are
removed unless Retain Safe Private is on and the creator declared the block SAFE. Pixel data is not
copied: the encode stage writes the masked pixels.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from digimask.config.settings import DeidOption
from digimask.pipeline.deid.profile import Profile, iod_types, resolve
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import validate_value

PIXEL_GROUP = 0x7FE0
_TEXT_VRS = {"LO", "LT", "SH", "ST", "UT", "UC", "PN"}
_DUMMY = {
    "AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DT": "19000101000000",
    "TM": "000000", "DS": "0", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED", "SH": "ANONYMIZED",
    "ST": "ANONYMIZED", "UT": "ANONYMIZED", "UC": "ANONYMIZED", "PN": "ANONYMIZED", "UR": "",
    "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0,
}


@dataclass
class Deidentified:
    dataset: Dataset  # header only, no pixel data
    pseudo_patient_id: str
    source_uid: str  # the source instance's SOP Instance UID after remapping
    output_uid: str  # SOP Instance UID of the derived (masked) output
    codes: list[tuple[str, str]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)  # public tags dropped: off the keep-list, or invalid for their VR


class Deidentifier:
    """Callable stage: original dataset -> :class:`Deidentified`."""

    def __init__(self, options: Iterable[DeidOption], pseudonymizer: Pseudonymizer, date_shift_max_days: int = 3650,
                 keep_attributes: Iterable[int] = ()) -> None:
        self.profile = Profile(options, keep_attributes)
        self.pseudo = pseudonymizer
        self.date_shift_max_days = date_shift_max_days

    def __call__(self, ds: Dataset) -> Deidentified:
        sop_class = str(ds.get("SOPClassUID", ""))
        sop_uid = str(ds.get("SOPInstanceUID", ""))
        patient_key = f"{ds.get('IssuerOfPatientID', '')}|{ds.get('PatientID', '')}"
        pseudo_id = self.pseudo.patient_id(str(ds.get("PatientID", "")), str(ds.get("IssuerOfPatientID", "")))
        walk = _Walk(self, ds, iod_types(sop_class), self.pseudo.date_shift_days(patient_key, self.date_shift_max_days))
        out = walk.dataset(ds, parent=None)
        _fill_missing_uids(out, ds, self.pseudo)
        out.PatientID = pseudo_id
        out.PatientName = self.pseudo.patient_name(pseudo_id)
        out.PatientIdentityRemoved = "YES"
        options = self.profile.options
        if DeidOption.retain_longitudinal_modified_dates in options:
            out.LongitudinalTemporalInformationModified = "MODIFIED"
        elif DeidOption.retain_longitudinal_full_dates in options:
            out.LongitudinalTemporalInformationModified = "UNMODIFIED"
        else:
            out.LongitudinalTemporalInformationModified = "REMOVED"
        return Deidentified(out, pseudo_id, self.pseudo.uid(sop_uid), self.pseudo.derived_uid(sop_uid), self.profile.codes,
                            sorted(walk.removed))


class _Walk:
    """One de-identification pass over one instance (holds the per-instance context)."""

    def __init__(self, deid: Deidentifier, original: Dataset, types: dict[int, str], shift_days: int) -> None:
        self.deid = deid
        self.types = types
        self.shift = dt.timedelta(days=-shift_days)
        self.safe_blocks = _safe_private_blocks(original) if DeidOption.retain_safe_private in deid.profile.options else set()
        self.identifying = _identifying_tokens(original)
        self.removed: set[int] = set()

    def dataset(self, src: Dataset, parent: int | None) -> Dataset:
        """De-identify ``src``: the instance itself (``parent`` None) or an item of sequence ``parent``."""
        out = Dataset()
        for elem in src:  # iterating a Dataset yields elements in tag order
            tag = elem.tag
            if tag.element == 0 or tag.group == PIXEL_GROUP:
                continue
            if tag.is_private:
                if self._keep_private(src, tag):
                    out.add(_copy(elem))
                continue
            action = self.deid.profile.action(tag)
            if tag == 0x00080300:  # characteristics of private blocks: keep items for retained blocks only
                items = [i for i in elem.value if (i.get("PrivateGroupReference"), i.get("PrivateCreatorReference")) in self.safe_blocks]
                if items:
                    out.add(DataElement(tag, "SQ", Sequence([_copy_ds(i) for i in items])))
                continue
            if action is None:
                if not self.deid.profile.keeps(tag, parent):
                    self.removed.add(int(tag))
                    continue
                resolved = "K"
            else:
                resolved = resolve(action, self.types.get(tag) if parent is None else None)
            new = self._apply(elem, resolved)
            if new is not None and not _valid(new):  # e.g. a bit flip made a kept text unusable
                self.removed.add(int(tag))
                continue
            if new is not None:
                out.add(new)
        return out

    def _keep_private(self, ds: Dataset, tag: BaseTag) -> bool:
        if not self.safe_blocks:
            return False
        if tag.is_private_creator:
            return (tag.group, str(ds[tag].value)) in self.safe_blocks
        creator_tag = Tag(tag.group, tag.element >> 8)
        return creator_tag in ds and (tag.group, str(ds[creator_tag].value)) in self.safe_blocks

    def _apply(self, elem: DataElement, action: str) -> DataElement | None:
        tag, vr = elem.tag, elem.VR
        if action == "X":
            return None
        if vr == "SQ":
            if action == "Z":
                return DataElement(tag, vr, Sequence())
            return DataElement(tag, vr, Sequence([self.dataset(item, parent=int(tag)) for item in elem.value]))
        if action == "Z":
            return DataElement(tag, vr, None)
        if action in ("U", "U*") or (action == "D" and vr == "UI"):
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [self.deid.pseudo.uid(str(v)) for v in values if v]
            return DataElement(tag, vr, mapped if len(mapped) > 1 else (mapped[0] if mapped else self.deid.pseudo.uid("")))
        if action == "D":
            return DataElement(tag, vr, _DUMMY.get(vr))
        if action == "C":
            return self._clean(elem)
        return _copy(elem)

    def _clean(self, elem: DataElement) -> DataElement:
        vr = elem.VR
        if vr in ("DA", "DT") and DeidOption.retain_longitudinal_modified_dates in self.deid.profile.options:
            values = elem.value if elem.VM > 1 else [elem.value]
            return DataElement(elem.tag, vr, [_shift(str(v), vr, self.shift) for v in values if v] or None)
        if vr in _TEXT_VRS and elem.value:
            return DataElement(elem.tag, vr, _clean_text(str(elem.value), self.identifying))
        return _copy(elem)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # allowed in text: TAB LF FF CR ESC
_LINE_BREAK = re.compile(r"[\t\n\f\r]")
_STRING_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "PN", "SH", "TM", "UI", "UC"}


def _valid(elem: DataElement) -> bool:
    """Whether a kept value is valid for its VR (PS3.5 6.2: characters, lengths, formats), so that an
    output never carries a value its IOD check or the PACS would reject."""
    if elem.VR not in _STRING_VRS | _TEXT_VRS or elem.value in (None, ""):
        return True
    values = elem.value if elem.VM > 1 else [elem.value]
    for value in values:
        if isinstance(value, (int, float)):  # IS/DS already parsed as numbers: pydicom writes them validly
            continue
        text = str(value)
        if _CONTROL.search(text) or (elem.VR in _STRING_VRS and _LINE_BREAK.search(text)):
            return False
        try:
            validate_value(elem.VR, text, config.RAISE)
        except (ValueError, TypeError):
            return False
    return True


def removed_note(tags: list[int], limit: int = 16) -> str:
    """``"3: 0008C830 00A00050 0010B030"``: how many attributes off the keep-list were dropped, and their
    tags (numbers only; never values), the first ``limit`` of them."""
    shown = " ".join(f"{t:08X}" for t in tags[:limit])
    return f"{len(tags)}: {shown}" + (f" (+{len(tags) - limit} more)" if len(tags) > limit else "")


def _fill_missing_uids(out: Dataset, original: Dataset, pseudo: Pseudonymizer) -> None:
    """Study and Series Instance UIDs are Type 1 in every accepted IOD: when the source lacks them, derive
    them with the key from what the instances of one study (series) share, so that they agree."""
    if not str(original.get("StudyInstanceUID", "")).strip("\x00 "):
        study = "|".join(str(original.get(k, "")) for k in ("IssuerOfPatientID", "PatientID", "AccessionNumber",
                                                             "StudyID", "StudyDate", "StudyTime"))
        out.StudyInstanceUID = pseudo.uid(f"missing-study|{study}")
    if not str(original.get("SeriesInstanceUID", "")).strip("\x00 "):
        series = "|".join(str(original.get(k, "")) for k in ("SeriesNumber", "Modality", "SeriesDate", "SeriesTime"))
        out.SeriesInstanceUID = pseudo.uid(f"missing-series|{out.StudyInstanceUID}|{series}")


def _copy(elem: DataElement) -> DataElement:
    return DataElement(elem.tag, elem.VR, elem.value)


def _copy_ds(ds: Dataset) -> Dataset:
    out = Dataset()
    for elem in ds:
        out.add(_copy(elem))
    return out


def _safe_private_blocks(ds: Dataset) -> set[tuple[int, str]]:
    return {
        (int(i.PrivateGroupReference), str(i.PrivateCreatorReference))
        for i in ds.get("PrivateDataElementCharacteristicsSequence", [])
        if i.get("BlockIdentifyingInformationStatus") == "SAFE" and "PrivateCreatorReference" in i
    }


def _shift(value: str, vr: str, delta: dt.timedelta) -> str:
    """Shift a DA or DT value by ``delta`` days, keeping the time and any precision/offset suffix."""
    try:
        day = dt.datetime.strptime(value[:8], "%Y%m%d") + delta
    except ValueError:
        return _DUMMY[vr]
    return day.strftime("%Y%m%d") + (value[8:] if vr == "DT" else "")


_DATE_LIKE = re.compile(r"\b\d{4}[-/.]?\d{2}[-/.]?\d{2}\b|\b\d{2}[-/.]\d{2}[-/.]\d{2,4}\b|\b\d{5,}\b")


def _identifying_tokens(ds: Dataset) -> set[str]:
    """Words of the patient's name and identifiers, to scrub from free text (Clean option)."""
    tokens: set[str] = set()
    for kw in ("PatientName", "PatientID", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
               "AccessionNumber", "ReferringPhysicianName", "OperatorsName", "PerformingPhysicianName",
               "IssuerOfPatientID", "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator"):
        value = ds.get(kw)
        for part in re.split(r"[\^=\s,\\]+", str(value) if value is not None else ""):
            if len(part) >= 2:
                tokens.add(part.lower())
    for item in ds.get("OtherPatientIDsSequence", []):
        if item.get("PatientID"):
            tokens.add(str(item.PatientID).lower())
    return tokens


def _clean_text(text: str, identifying: set[str]) -> str:
    """Replace the patient's name parts and identifiers, and anything date- or ID-like, with ``*``."""
    words = re.split(r"(\W+)", text)
    cleaned = "".join("*" if w.lower() in identifying else w for w in words)
    return _DATE_LIKE.sub("*", cleaned)
