"""Header de-identification against PS3.15 Table E.1-1, on realistic camera instances."""
from __future__ import annotations

import datetime as dt

import dicom_factory as f
import pytest
from digimask.config.settings import DeidOption
from digimask.pipeline.deid.deidentify import Deidentifier
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

MODIFIED = DeidOption.retain_longitudinal_modified_dates


def all_values(ds: Dataset) -> str:
    """Every value at every depth, private elements included, as one string."""
    parts = []
    for elem in ds.iterall():
        if elem.VR not in ("OB", "OW", "SQ"):
            parts.append(str(elem.value))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def originals(astronaut) -> list[Dataset]:
    return [f.op8("astronaut", astronaut), f.vl("astronaut-vl", astronaut)]


@pytest.mark.parametrize("options", [[], [MODIFIED, DeidOption.retain_patient_characteristics, DeidOption.clean_descriptors]])
def test_no_phi_survives(originals, options) -> None:
    deid = Deidentifier(options, Pseudonymizer(b"key"))
    for ds in originals:
        out = deid(ds).dataset
        text = all_values(out)
        for value in f.phi_values(ds):
            assert value not in text, f"{value!r} leaked"
        assert not any(e.tag.is_private for e in out.iterall())


def test_uids_and_pseudonyms_are_stable_and_keyed(originals) -> None:
    ds = originals[0]
    a, b = Deidentifier([], Pseudonymizer(b"key"))(ds), Deidentifier([], Pseudonymizer(b"key"))(ds)
    other = Deidentifier([], Pseudonymizer(b"another key"))(ds)
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SynchronizationFrameOfReferenceUID", "PatientID"):
        assert a.dataset[kw].value == b.dataset[kw].value
        assert a.dataset[kw].value != other.dataset[kw].value
        assert a.dataset[kw].value != ds[kw].value
    assert a.dataset.PatientID.startswith("DM-") and str(a.dataset.PatientName).endswith(a.dataset.PatientID)
    assert a.output_uid != a.source_uid == a.dataset.SOPInstanceUID
    assert len(a.output_uid) <= 64


def test_same_patient_gets_same_pseudonym_and_date_shift(astronaut) -> None:
    first, second = f.op8("p", astronaut), f.op8("p", astronaut)  # same fake patient, different instances
    second.StudyDate = (dt.datetime.strptime(first.StudyDate, "%Y%m%d") + dt.timedelta(days=30)).strftime("%Y%m%d")
    deid = Deidentifier([MODIFIED], Pseudonymizer(b"key"), date_shift_max_days=365)
    a, b = deid(first).dataset, deid(second).dataset
    assert a.PatientID == b.PatientID
    da, db = (dt.datetime.strptime(x.StudyDate, "%Y%m%d") for x in (a, b))
    assert (db - da).days == 30  # intervals within a patient are kept
    shift = (dt.datetime.strptime(first.StudyDate, "%Y%m%d") - da).days
    assert 1 <= shift <= 365
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    assert a.AcquisitionDateTime[8:] == first.AcquisitionDateTime[8:]  # time of day kept


def test_type1_gets_dummy_type2_gets_empty(originals) -> None:
    out = Deidentifier([], Pseudonymizer(b"key"))(originals[0]).dataset  # OP 8 bit, no date option
    assert out.ContentDate == "19000101"  # Type 1 in the OP Image module: Z/D -> D
    assert out.AcquisitionDateTime  # Type 1 in OP: X/Z/D -> D
    assert "StudyDate" in out and not out.StudyDate  # Type 2: Z
    assert "PatientBirthDate" in out and not out.PatientBirthDate
    assert "InstitutionName" not in out and "DeviceSerialNumber" not in out
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert out.PatientIdentityRemoved == "YES"


def test_options_retain_what_they_name(originals) -> None:
    ds = originals[0]
    keep = Deidentifier([DeidOption.retain_patient_characteristics, DeidOption.retain_device_identity,
                         DeidOption.retain_institution_identity], Pseudonymizer(b"key"))(ds).dataset
    assert keep.PatientSex == ds.PatientSex and keep.PatientAge == ds.PatientAge
    assert keep.DeviceSerialNumber == ds.DeviceSerialNumber and keep.InstitutionName == ds.InstitutionName
    basic = Deidentifier([], Pseudonymizer(b"key"))(ds).dataset
    assert not basic.PatientSex and "PatientAge" not in basic


def test_clean_descriptors_scrubs_identifiers(originals) -> None:
    ds = originals[0]
    out = Deidentifier([DeidOption.clean_descriptors], Pseudonymizer(b"key"))(ds).dataset
    assert out.StudyDescription.startswith("External eye photo")
    assert ds.PatientName.family_name not in out.StudyDescription
    assert "StudyDescription" not in Deidentifier([], Pseudonymizer(b"key"))(ds).dataset


def test_nested_sequences_icons_overlays_and_private_blocks(astronaut) -> None:
    ds = f.op8("nested", astronaut)
    item = ds.AnatomicRegionSequence[0]
    item.PatientName = "NESTED^NAME"  # identifying attributes are cleaned at any depth
    icon = Dataset()
    icon.Rows = icon.Columns = 1
    ds.IconImageSequence = Sequence([icon])
    ds.add_new(0x60003000, "OW", b"\x00\x01")
    safe = ds.private_block(0x0033, "VENDOR SAFE 1.0", create=True)
    safe.add_new(0x01, "LO", "exposure 1/60")
    decl = Dataset()
    decl.PrivateGroupReference, decl.PrivateCreatorReference, decl.BlockIdentifyingInformationStatus = 0x0033, "VENDOR SAFE 1.0", "SAFE"
    ds.PrivateDataElementCharacteristicsSequence = Sequence([decl])
    out = Deidentifier([], Pseudonymizer(b"key"))(ds).dataset
    assert "NESTED" not in all_values(out)
    assert "IconImageSequence" not in out and 0x60003000 not in out
    assert not any(e.tag.is_private for e in out.iterall())
    kept = Deidentifier([DeidOption.retain_safe_private], Pseudonymizer(b"key"))(ds).dataset
    assert kept.private_block(0x0033, "VENDOR SAFE 1.0")[0x01].value == "exposure 1/60"
    assert "operator note" not in all_values(kept)  # the undeclared modality block still goes
    assert len(kept.PrivateDataElementCharacteristicsSequence) == 1
