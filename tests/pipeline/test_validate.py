"""Output validity before queueing: the IOD's mandatory Type 1 / Type 2 attributes, checked by dciodvfy."""
from __future__ import annotations

import dicom_factory as f
import pytest
from digimask.config.settings import parse
from digimask.pipeline.dicom.validate import complete_output
from digimask.pipeline.errors import Quarantined
from digimask.pipeline.mask.maskers import BlankMasker
from digimask.pipeline.process import Processor
from peers import dciodvfy_errors, require


@pytest.fixture(scope="module")
def processor() -> Processor:
    return Processor(parse({"node": {"allowed_calling_aes": ["CAM"]}, "deid": {"secret": "k"}}), BlankMasker())


def test_missing_type2_is_added_empty_and_the_output_validates(processor, astronaut, tmp_path) -> None:
    require("dciodvfy")
    ds = f.op8("v", astronaut[:64, :64])
    del ds.StudyDate, ds.ReferringPhysicianName, ds.PatientOrientation  # Type 2 / 2C in the source: absent
    out = processor.process(ds, route=False).dataset
    target = tmp_path / "before.dcm"
    out.save_as(target, enforce_file_format=True)
    assert any("StudyDate" in e for e in dciodvfy_errors(target))
    complete_output(out)
    for kw in ("StudyDate", "ReferringPhysicianName", "PatientOrientation"):
        assert kw in out and not out[kw].value
    out.save_as(target, enforce_file_format=True)
    assert dciodvfy_errors(target) == []


def test_missing_type1_quarantines_naming_it(processor, astronaut) -> None:
    ds = f.vl("v", astronaut[:64, :64])
    del ds.Modality
    out = processor.process(ds, route=False).dataset
    with pytest.raises(Quarantined, match="output lacks Type 1 attribute.*: Modality"):
        complete_output(out)


def _checked(out, tmp_path, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    """dciodvfy's errors for ``out`` as it would be forwarded without the check."""
    target = tmp_path / f"{name}.dcm"
    out.save_as(target, enforce_file_format=True)
    return dciodvfy_errors(target)


def test_a_code_item_without_its_type1_attributes_quarantines_naming_them(processor, astronaut, tmp_path) -> None:
    require("dciodvfy")
    ds = f.op8("v", astronaut[:64, :64])
    item = ds.AnatomicRegionSequence[0]
    del item.CodeMeaning, item.CodeValue  # a flipped tag in the modality's item
    out = processor.process(ds, route=False).dataset
    assert any("AnatomicRegionSequence" in e and "CodeMeaning" in e for e in _checked(out, tmp_path, "code"))
    with pytest.raises(Quarantined) as caught:
        complete_output(out)
    assert "AnatomicRegionSequence/CodeMeaning missing (Type 1)" in caught.value.reason
    assert "0 of Code Value, Long Code Value, URN Code Value" in caught.value.reason


def test_a_code_value_without_its_scheme_quarantines(processor, astronaut) -> None:
    ds = f.op8("v", astronaut[:64, :64])
    del ds.AnatomicRegionSequence[0].CodingSchemeDesignator
    out = processor.process(ds, route=False).dataset
    with pytest.raises(Quarantined, match="AnatomicRegionSequence/CodingSchemeDesignator missing"):
        complete_output(out)


@pytest.mark.parametrize(("keyword", "value", "named"), [
    ("Modality", "HC", "Modality not an Enumerated Value"),  # OP is the one the OP IOD allows
    ("SynchronizationTrigger", "NO TRIGGGR", "SynchronizationTrigger not an Enumerated Value"),
    ("ImageType", ["ORIGINAL", "R"], "ImageType value 2 not an Enumerated Value"),  # PRIMARY for OP
])
def test_a_value_outside_the_enumerated_values_quarantines(processor, astronaut, tmp_path, keyword, value, named) -> None:
    require("dciodvfy")
    ds = f.op8("v", astronaut[:64, :64])
    setattr(ds, keyword, value)
    out = processor.process(ds, route=False).dataset
    assert any(keyword in e and "enumerated value" in e.lower() for e in _checked(out, tmp_path, keyword))
    with pytest.raises(Quarantined, match=named):
        complete_output(out)


def test_a_flipped_vr_inside_an_item_quarantines(processor, astronaut, tmp_path) -> None:
    require("dciodvfy")
    ds = f.op8("v", astronaut[:64, :64])
    item = ds.AnatomicRegionSequence[0]
    del item.CodingSchemeDesignator
    item.add_new(0x00080102, "SL", 1397510217)  # what a bit flip in the VR bytes of SH reads as
    out = processor.process(ds, route=False).dataset
    if 0x00080102 in out.AnatomicRegionSequence[0]:  # the de-identifier may already drop it
        assert any("CodingSchemeDesignator" in e for e in _checked(out, tmp_path, "vr"))
    with pytest.raises(Quarantined, match="CodingSchemeDesignator (has VR SL, not SH|missing)"):
        complete_output(out)


def test_an_empty_type1c_sequence_quarantines(processor, astronaut, tmp_path) -> None:
    require("dciodvfy")
    ds = f.op8("v", astronaut[:64, :64])
    ds.ChannelDescriptionCodeSequence = []
    out = processor.process(ds, route=False).dataset
    assert any("ChannelDescriptionCodeSequence" in e for e in _checked(out, tmp_path, "empty"))
    with pytest.raises(Quarantined, match=r"ChannelDescriptionCodeSequence is empty \(Type 1C\)"):
        complete_output(out)


def test_valid_outputs_of_every_forwarded_iod_pass_and_validate(processor, astronaut, tmp_path) -> None:
    """Secondary Capture, VL Photographic, Ophthalmic Photography, multi-frame SC: the check passes what
    dciodvfy passes (no over-strict rule from the generated tables)."""
    require("dciodvfy")
    import video_factory as vf

    face = astronaut[:64, :64]
    sc = f.vl("v", face)
    sc.SOPClassUID = sc.file_meta.MediaStorageSOPClassUID = f.SC
    sc.ConversionType = "DI"
    for name, ds in {"op8": f.op8("v", face), "vl": f.vl("v", face), "sc": sc,
                     "mf-sc": vf.multiframe_sc("v", [face, face], rate=10.0)}.items():
        out = processor.process(ds, route=False).dataset
        complete_output(out)
        assert _checked(out, tmp_path, name) == [], name


def test_a_frame_increment_pointer_to_an_absent_attribute_quarantines(processor, astronaut, tmp_path) -> None:
    """An output whose FrameIncrementPointer names FrameTime, which it lacks (seen in the fault harness's
    fuzzed outputs): dciodvfy rejects it, so the check quarantines it, naming both; pointing at an
    attribute that is there, it passes."""
    require("dciodvfy")
    ds = f.op8("v", astronaut[:64, :64])
    ds.NumberOfFrames, ds.FrameIncrementPointer = 1, 0x00181063
    out = processor.process(ds, route=False).dataset
    if "FrameTime" in out:
        del out.FrameTime
    assert any("FrameIncrementPointer" in e for e in _checked(out, tmp_path, "pointer"))
    with pytest.raises(Quarantined, match=r"FrameIncrementPointer points at FrameTime, which is absent"):
        complete_output(out)
    out.FrameIncrementPointer = 0x00280008  # NumberOfFrames, as multi-frame SC writes it: present
    complete_output(out)


@pytest.mark.parametrize("charset, value, valid, dciodvfy_sees", [
    (None, "Caf\xe9", False, True),  # a Latin-1 byte with no SpecificCharacterSet (seen in the fault harness)
    ("ISO_IR 100", "Caf\xe9", True, True),
    (None, "\u5c71\u7530", False, False),  # pydicom would write "??": data lost without a word
    ("ISO_IR 192", "\u5c71\u7530", True, True),
    (None, "Cafe", True, True),
])
def test_text_outside_its_character_repertoire_quarantines(processor, astronaut, tmp_path, charset, value, valid,
                                                           dciodvfy_sees) -> None:
    """Manufacturer (LO, kept by the profile) outside the repertoire the output declares: quarantined naming
    it. Where the value is Latin-1 without a declared character set, dciodvfy rejects the output as well."""
    require("dciodvfy")
    ds = f.op8("c", astronaut[:64, :64])
    ds.Manufacturer = value
    del ds.SpecificCharacterSet
    if charset:
        ds.SpecificCharacterSet = charset
    out = processor.process(ds, route=False).dataset
    assert out.Manufacturer == value
    if valid:
        complete_output(out)
        assert _checked(out, tmp_path, "text") == []
        return
    with pytest.raises(Quarantined, match=r"Manufacturer holds characters outside its repertoire \(default\)"):
        complete_output(out)
    if dciodvfy_sees:
        assert any("Manufacturer" in e and "character repertoire" in e for e in _checked(out, tmp_path, "text"))


def test_a_code_string_outside_ascii_quarantines_even_under_a_declared_character_set(processor, astronaut) -> None:
    """CS values use the default repertoire whatever SpecificCharacterSet says (PS3.5 6.1.2.3): a Latin-1
    letter in ConversionType under ISO_IR 100 is quarantined, and the reason names the default repertoire."""
    ds = f.op8("c", astronaut[:64, :64])
    ds.SpecificCharacterSet = "ISO_IR 100"
    out = processor.process(ds, route=False).dataset
    out.ConversionType = "WS\xc9"
    with pytest.raises(Quarantined, match=r"ConversionType holds characters outside its repertoire \(default\)"):
        complete_output(out)
