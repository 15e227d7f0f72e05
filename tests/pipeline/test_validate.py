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
