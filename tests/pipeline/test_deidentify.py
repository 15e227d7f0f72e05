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


HOSTILE = {  # tags a fuzzer, a vendor or a newer edition put PHI in; none is on the keep-list
    0x0008C830: ("LO", "name"), 0x00A00050: ("LO", "accession"), 0x0010B030: ("DA", "birth"),
    0x00202410: ("SH", "id"), 0x00080042: ("CS", "accession"),  # (0008,0042) is retired
}


def planted(ds: Dataset) -> dict[int, str]:
    """The PHI each hostile tag carries: the instance's own name, accession number, birth date, ID."""
    phi = {"name": str(ds.PatientName), "accession": ds.AccessionNumber, "birth": ds.PatientBirthDate, "id": ds.PatientID}
    return {tag: phi[kind] for tag, (_, kind) in HOSTILE.items()}


def test_unknown_retired_and_undefined_attributes_are_removed(astronaut) -> None:
    ds = f.op8("hostile", astronaut)
    for tag, value in planted(ds).items():
        ds.add_new(tag, HOSTILE[tag][0], value)
    ds.AnatomicRegionSequence[0].add_new(0x00100030, "DA", ds.PatientBirthDate)  # Annex E names it: cleaned anyway
    ds.AnatomicRegionSequence[0].add_new(0x00080070, "LO", ds.AccessionNumber)  # defined, but not in this sequence
    unknown_seq = Dataset()
    unknown_seq.add_new(0x00080100, "SH", ds.PatientID)  # a code value inside a sequence nobody defined
    ds.add_new(0x0008C831, "SQ", Sequence([unknown_seq]))
    for options in ([], list(DeidOption)[1:]):  # basic, and every retain option except full dates
        done = Deidentifier(options, Pseudonymizer(b"key"))(ds)
        text = all_values(done.dataset)
        for tag, value in planted(ds).items():
            assert tag not in done.dataset and value not in text, f"{tag:08X} kept"
        assert 0x00080070 not in done.dataset.AnatomicRegionSequence[0]
        assert 0x0008C831 not in done.dataset
        assert set(HOSTILE) | {0x00080070, 0x0008C831} <= set(done.removed)
        assert done.dataset.AnatomicRegionSequence[0].CodeValue == "81745001"  # defined there: kept
        assert done.dataset.Manufacturer == ds.Manufacturer and done.dataset.Modality == "OP"  # keep-list


def test_the_administrator_extends_the_keep_list(astronaut) -> None:
    from digimask.config.settings import Deid
    from digimask.pipeline.deid.deidentify import removed_note

    ds = f.op8("extended", astronaut)
    ds.add_new(0x00202410, "SH", "LEFT SIDE")
    keep = Deid(secret="k", keep_attributes=["0020,2410"]).keep_tags
    assert Deidentifier([], Pseudonymizer(b"key"), keep_attributes=keep)(ds).dataset[0x00202410].value == "LEFT SIDE"
    done = Deidentifier([], Pseudonymizer(b"key"))(ds)
    assert removed_note(done.removed) == "1: 00202410"
    with pytest.raises(ValueError, match="private"):
        Deid(secret="k", keep_attributes=["0029,1001"])
    with pytest.raises(ValueError, match="unknown attribute"):
        Deid(secret="k", keep_attributes=["NotAKeyword"])


def test_missing_study_and_series_uids_are_generated_per_study(astronaut) -> None:
    a, b = f.op8("no-uids", astronaut, 1), f.op8("no-uids", astronaut, 2)  # one patient, one study
    other = f.op8("no-uids", astronaut, 3)
    other.AccessionNumber, other.StudyID = "ACC999999", "S999"  # another study of the same patient
    for ds in (a, b, other):
        del ds.StudyInstanceUID, ds.SeriesInstanceUID
    b.StudyDate, b.StudyTime = a.StudyDate, a.StudyTime
    deid = Deidentifier([], Pseudonymizer(b"key"))
    da, db, do = (deid(x).dataset for x in (a, b, other))
    assert da.StudyInstanceUID == db.StudyInstanceUID != do.StudyInstanceUID
    assert da.SeriesInstanceUID == db.SeriesInstanceUID != do.SeriesInstanceUID
    assert da.StudyInstanceUID.startswith("2.25.") and da.StudyInstanceUID != Pseudonymizer(b"key").uid("")
    assert Deidentifier([], Pseudonymizer(b"other"))(a).dataset.StudyInstanceUID != da.StudyInstanceUID


def test_kept_values_invalid_for_their_vr_are_dropped(astronaut) -> None:
    ds = f.op8("flipped", astronaut)
    ds.ManufacturerModelName = "Ext\x03am 3000"  # a bit flip: a control character in LO (dciodvfy: invalid)
    done = Deidentifier([], Pseudonymizer(b"key"))(ds)
    assert "ManufacturerModelName" not in done.dataset and 0x00081090 in done.removed
    assert done.dataset.Manufacturer == ds.Manufacturer  # valid values stay
