"""The whole pipeline on one instance: output attributes, validity (dciodvfy), fail-closed masking."""
from __future__ import annotations

import subprocess
from pathlib import Path

import dicom_factory as f
import numpy as np
import pydicom
import pytest
from digimask.config.settings import parse
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.pipeline.dicom import private_block
from digimask.pipeline.dicom.read import read
from digimask.pipeline.errors import MaskingFailed, Quarantined
from digimask.pipeline.mask.maskers import MaskResult
from digimask.pipeline.process import Processor
from peers import dciodvfy_errors, require


def settings(masker: str = "blank", on_failure: str = "quarantine", **storage):  # type: ignore[no-untyped-def]
    return parse({
        "node": {"allowed_calling_aes": ["STORESCU"]},
        "deid": {"secret": "k", "options": ["retain_longitudinal_modified_dates"]},
        "pixels": {"masker": masker, "on_failure": on_failure},
        "storage": storage,
        "destinations": [{"name": "PACS", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}],
        "routes": [{"name": "op", "match": {"modality": ["OP"]}, "destinations": ["PACS"]}],
    })


class Failing:
    name, cleans_recognizable_features = "failing", True

    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        raise MaskingFailed("no face found")


class Buggy(Failing):
    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError


class PassThrough(Failing):
    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        return MaskResult(image.copy())


class NoisyCopy(Failing):
    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        noise = np.random.default_rng(0).integers(-8, 9, image.shape)
        return MaskResult(np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8))


class Inverted(Failing):
    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        return MaskResult(255 - image)


class WithParams(Failing):
    name = "with_params"

    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        return MaskResult(np.full_like(image, 7), {"schema": "test.params/1", "gaze": [1.5, -2.0]})


@pytest.fixture(scope="module")
def instances(astronaut, tmp_path_factory) -> list[Path]:
    return f.write_set(tmp_path_factory.mktemp("dicom"), {"astronaut": astronaut})


def test_output_is_a_valid_deidentified_derived_image(instances, tmp_path) -> None:
    proc = Processor(settings())
    pseudo = Pseudonymizer(b"k")
    for path in instances:
        original = read(path)
        done = proc.process(original, "STORESCU", "DIGIMASK", route=False)
        out = done.dataset
        assert out.ImageType[0] == "DERIVED"
        src = out.SourceImageSequence[0]
        assert src.ReferencedSOPInstanceUID == pseudo.uid(original.SOPInstanceUID) != out.SOPInstanceUID
        assert src.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
        codes = {c.CodeValue for c in out.DeidentificationMethodCodeSequence}
        assert {"113100", "113101", "113102", "113107"} <= codes
        assert (out.PatientIdentityRemoved, out.BurnedInAnnotation, out.RecognizableVisualFeatures) == ("YES", "NO", "NO")
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        assert not np.array_equal(out.pixel_array, original.pixel_array)
        target = tmp_path / path.name
        out.save_as(target, enforce_file_format=True)
        again = pydicom.dcmread(target)
        assert again.pixel_array.shape == original.pixel_array.shape
        if path.name.endswith(".vl.dcm"):
            assert again.LossyImageCompression == "01"  # derived from a lossy source stays marked lossy
        require("dciodvfy")
        assert dciodvfy_errors(target) == []


def test_comparison_maskers_say_features_remain(instances) -> None:
    out = Processor(settings("blur")).process(read(instances[0]), route=False).dataset
    assert out.RecognizableVisualFeatures == "YES"
    assert not {"113101", "113102"} & {c.CodeValue for c in out.DeidentificationMethodCodeSequence}


@pytest.mark.parametrize("masker", [Failing(), Buggy(), PassThrough(), NoisyCopy(), Inverted()])
def test_masker_failure_never_releases_original_pixels(instances, masker) -> None:
    with pytest.raises(Quarantined, match="masking failed"):
        Processor(settings(), masker).process(read(instances[0]), route=False)


def test_on_failure_blank_sends_a_blank_image(instances) -> None:
    done = Processor(settings(on_failure="blank"), Failing()).process(read(instances[0]), route=False)
    assert done.notes["mask_failure"] == "no face found"
    assert done.dataset.pixel_array.max() == 0


def test_masker_parameters_go_to_the_private_block(instances, tmp_path) -> None:
    out = Processor(settings(), WithParams()).process(read(instances[0]), route=False).dataset
    out.save_as(tmp_path / "p.dcm", enforce_file_format=True)
    schema, masker, params = private_block.read(pydicom.dcmread(tmp_path / "p.dcm"))
    assert (schema, masker, params["gaze"]) == ("test.params/1", "with_params", [1.5, -2.0])
    decl = out.PrivateDataElementCharacteristicsSequence[0]
    assert (decl.PrivateGroupReference, decl.PrivateCreatorReference, decl.BlockIdentifyingInformationStatus) == (0x0071, "DIGIMASK 1.0", "SAFE")


def test_routing_and_bad_inputs_are_quarantined_with_reasons(instances, astronaut, tmp_path) -> None:
    proc = Processor(settings(max_pixels=300_000))
    assert proc.process(read(instances[0])).destinations == ["PACS"]  # OP matches the route
    with pytest.raises(Quarantined, match="no routing rule matched"):
        proc.process(read(instances[1]))  # VL photographic is XC: no rule
    bad = f.bad_inputs(tmp_path, astronaut[:64, :64])
    expected = {"truncated": "malformed|cannot decode|no pixel data", "no_pixel_data": "no pixel data", "wrong_sop_class": "unsupported SOP class",
                "ten_thousand_rows": "too large", "pixel_length_mismatch": "cannot decode"}
    for name, path in bad.items():
        with pytest.raises(Quarantined, match=expected[name]):
            proc.process(read(path), route=False)


def test_malformed_values_are_never_logged(astronaut, tmp_path, caplog, recwarn) -> None:
    ds = f.op8("malformed", astronaut[:64, :64])
    path = f.save(ds, tmp_path / "m.dcm")
    bad_time = f"{ds.StudyTime[:2]}:{ds.StudyTime[2:4]}:".encode()  # an invalid TM, which the profile would keep
    path.write_bytes(path.read_bytes().replace(ds.StudyTime.encode(), bad_time))
    caplog.set_level("DEBUG")
    out = Processor(settings()).process(read(path), route=False).dataset
    assert "StudyTime" not in out  # invalid for TM: dropped (the worker adds the Type 2 attribute back empty)
    assert bad_time.decode() not in caplog.text and not any(bad_time.decode() in str(w.message) for w in recwarn)


@pytest.mark.parametrize("kind", ["mf_true_color_sc", "op16_monochrome"])
def test_other_accepted_iods_round_trip(kind, astronaut) -> None:
    ds = f.op8(kind, astronaut[:32, :48])
    if kind == "mf_true_color_sc":
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.4"
        ds.NumberOfFrames = 2
        ds.PixelData = astronaut[:32, :48].tobytes() * 2
    else:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.2"
        gray = (astronaut[:32, :48, 0].astype(np.uint16) << 4) + 7
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        del ds.PlanarConfiguration
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelData = gray.tobytes()
    out = Processor(settings("pixelate")).process(ds, route=False).dataset
    arr = out.pixel_array
    if kind == "mf_true_color_sc":
        assert arr.shape == (2, 32, 48, 3) and out.NumberOfFrames == 2
    else:
        assert arr.shape == (32, 48) and (out.BitsAllocated, out.BitsStored, out.PhotometricInterpretation) == (16, 12, "MONOCHROME2")
        assert arr.max() > 255  # written back at the source's depth


@pytest.mark.parametrize("tool, args", [("dcmcjpls", []), ("dcmcjpeg", ["+e1"]), ("dcmcrle", [])])
def test_compressed_transfer_syntaxes_decode(tool, args, instances, tmp_path) -> None:
    """JPEG-LS, lossless JPEG and RLE inputs (encoded by DCMTK) are decoded by pydicom's plugins."""
    require(tool)
    src = tmp_path / f"{tool}.dcm"
    subprocess.run([tool, *args, str(instances[0]), str(src)], check=True, capture_output=True)
    ds = read(src)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    out = Processor(settings("pixelate")).process(ds, route=False).dataset
    assert out.pixel_array.shape == read(instances[0]).pixel_array.shape


@pytest.mark.parametrize("lossless", [True, False])
def test_jpeg2000_decodes(lossless, astronaut, tmp_path) -> None:
    """JPEG 2000 (lossless YBR_RCT, lossy YBR_ICT) is decoded and written out as plain RGB."""
    src = f.save(f.op8_jpeg2000("j2k", astronaut, lossless=lossless), tmp_path / "j2k.dcm")
    ds = read(src)
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    out = Processor(settings("pixelate")).process(ds, route=False).dataset
    assert out.pixel_array.shape == astronaut.shape and out.PhotometricInterpretation == "RGB"
    # colours decoded, not left in the codestream's YCbCr: pixelation keeps the per-channel means
    assert np.abs(out.pixel_array.mean(axis=(0, 1)) - astronaut.mean(axis=(0, 1))).max() < 3
    assert out.LossyImageCompression == ("00" if lossless else "01")
    target = tmp_path / "out.dcm"
    out.save_as(target, enforce_file_format=True)
    assert dciodvfy_errors(target) == []
