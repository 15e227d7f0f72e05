"""Make realistic external-eye DICOM test instances with fake PHI (the modality's side of the tests).

Mirrors what ophthalmic cameras send: Ophthalmic Photography 8 Bit (uncompressed RGB) and VL
Photographic (JPEG Baseline, YBR_FULL_422), each with a patient, institution, device, dates and a
modality private block that carries PHI. ``PHI`` lists every identifying value for leak checks.
"""
from __future__ import annotations

import datetime
import hashlib
import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    generate_uid,
)

OP8 = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
VLP = "1.2.840.10008.5.1.4.1.1.77.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"
FIRST = ["ALICE", "BOB", "CHEN", "DIANA", "EMIL", "FATIMA", "GIORGIO", "HANA", "IVAN", "JUNO"]
LAST = ["MARTIN", "NGUYEN", "OKAFOR", "PETROVA", "QUINN", "ROSSI", "SATO", "TANAKA", "UHLIG", "VARGA"]


def _code(v: str, s: str, m: str) -> Dataset:
    d = Dataset()
    d.CodeValue, d.CodingSchemeDesignator, d.CodeMeaning = v, s, m
    return d


def phi_values(ds: Dataset) -> list[str]:
    """Identifying strings of an instance made here: none may appear in a de-identified output."""
    values = [str(ds.PatientName), str(ds.PatientName).split("^")[0], str(ds.PatientName).split("^")[1],
              ds.PatientID, ds.PatientBirthDate, ds.OtherPatientIDsSequence[0].PatientID, ds.AccessionNumber,
              ds.InstitutionName, ds.InstitutionAddress, ds.DeviceSerialNumber, "HOUSE", "JACKIE", ds.StationName,
              ds.StudyDate, ds.AcquisitionDateTime, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
              "operator note"]
    return [str(v) for v in values]


def _base(sop_class: str, name: str, rgb: np.ndarray, idx: int) -> Dataset:
    h = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    when = datetime.datetime(2024, 1 + h % 12, 1 + h % 27, 9 + h % 8, h % 60, (h >> 8) % 60)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = f"{LAST[h % 10]}^{FIRST[(h >> 4) % 10]}"
    ds.PatientID = f"MRN{h % 10**7:07d}"
    ds.PatientBirthDate = f"{1940 + h % 70}{1 + (h >> 3) % 12:02d}{1 + (h >> 5) % 28:02d}"
    ds.PatientSex = "MF"[h % 2]
    ds.PatientAge = f"{(2024 - 1940 - h % 70):03d}Y"
    other = Dataset()
    other.PatientID, other.TypeOfPatientID = f"NHS{h % 10**9:09d}", "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StudyID = f"S{h % 10000}"
    ds.AccessionNumber = f"ACC{h % 10**6:06d}"
    ds.StudyDescription = f"External eye photo {ds.PatientName}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = idx
    ds.InstitutionName = "St Elsewhere Eye Hospital"
    ds.InstitutionAddress = "1 Example Road, Springfield"
    ds.StationName = "EYECAM01"
    ds.Manufacturer = "ExampleOptics"
    ds.ManufacturerModelName = "ExtCam 3000"
    ds.DeviceSerialNumber = f"SN{h % 99999:05d}"
    ds.OperatorsName = "NURSE^JACKIE"
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel = 3
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PlanarConfiguration = 0
    blk = ds.private_block(0x0029, "EXAMPLEOPTICS 1.0", create=True)
    blk.add_new(0x01, "LO", f"operator note for {ds.PatientName}")
    return ds


def op8(name: str, rgb: np.ndarray, idx: int = 1) -> Dataset:
    """Ophthalmic Photography 8 Bit Image, uncompressed RGB."""
    ds = _base(OP8, name, rgb, idx)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "OP"
    ds.SynchronizationFrameOfReferenceUID = generate_uid()
    ds.SynchronizationTrigger = "NO TRIGGER"
    ds.AcquisitionTimeSynchronized = "N"
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 0
    ds.PhotometricInterpretation = "RGB"
    ds.LossyImageCompression = "00"
    ds.ImageLaterality = "B"
    ds.AnatomicRegionSequence = Sequence([_code("81745001", "SCT", "Eye")])
    ds.AcquisitionDeviceTypeCodeSequence = Sequence([_code("409903006", "SCT", "External Camera")])
    for kw in ("HorizontalFieldOfView", "EmmetropicMagnification", "IntraOcularPressure", "PupilDilated", "DetectorType"):
        setattr(ds, kw, None)
    for kw in ("RefractiveStateSequence", "IlluminationTypeCodeSequence", "LightPathFilterTypeStackCodeSequence",
               "ImagePathFilterTypeStackCodeSequence", "LensesCodeSequence"):
        setattr(ds, kw, Sequence([]))
    ds.PatientEyeMovementCommanded = "NO"
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    return ds


def op8_jpeg2000(name: str, rgb: np.ndarray, idx: int = 1, lossless: bool = True) -> Dataset:
    """Ophthalmic Photography 8 Bit in JPEG 2000, as many ophthalmic cameras send it: lossless with the
    reversible colour transform (YBR_RCT), or lossy 20:1 with the irreversible one (YBR_ICT). Encoded by
    OpenJPEG (pylibjpeg-openjpeg): DCMTK has no JPEG 2000 encoder."""
    ds = op8(name, rgb, idx)
    if lossless:
        ds.compress(JPEG2000Lossless, rgb)
        ds.PhotometricInterpretation = "YBR_RCT"
    else:
        ds.compress(JPEG2000, rgb, j2k_cr=[20])
        ds.PhotometricInterpretation = "YBR_ICT"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = "20"
        ds.LossyImageCompressionMethod = "ISO_15444_1"
    return ds


def vl(name: str, rgb: np.ndarray, idx: int = 1) -> Dataset:
    """VL Photographic Image, JPEG Baseline as cameras send it."""
    rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    ds = _base(VLP, name, rgb, idx)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Modality = "XC"
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "10"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.AcquisitionContextSequence = Sequence([])
    ds.Laterality = ""  # Type 2C: both eyes in one photo
    ds.AnatomicRegionSequence = Sequence([_code("81745001", "SCT", "Eye")])
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92, subsampling=1, progressive=False)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def write_set(folder: Path, images: dict[str, np.ndarray]) -> list[Path]:
    """OP 8-bit and VL JPEG files for each named image; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, rgb) in enumerate(sorted(images.items()), 1):
        out.append(save(op8(name, rgb, i), folder / f"{name}.op8.dcm"))
        out.append(save(vl(name, rgb, i), folder / f"{name}.vl.dcm"))
    return out


def bad_inputs(folder: Path, rgb: np.ndarray) -> dict[str, Path]:
    """Malformed or unacceptable inputs, each named for what is wrong with it."""
    folder.mkdir(parents=True, exist_ok=True)
    good = save(op8("bad-source", rgb), folder / "good.dcm")
    data = good.read_bytes()
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    no_pixels = op8("no-pixels", rgb)
    del no_pixels.PixelData
    ct = op8("wrong-class", rgb)
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = CT
    huge = op8("huge", np.zeros((10_000, 40, 3), np.uint8))
    lies = op8("lies", rgb)  # header says more rows than the pixel data holds
    lies.Rows = rgb.shape[0] * 2
    good.unlink()
    return {
        "truncated": truncated,
        "no_pixel_data": save(no_pixels, folder / "no_pixels.dcm"),
        "wrong_sop_class": save(ct, folder / "ct.dcm"),
        "ten_thousand_rows": save(huge, folder / "huge.dcm"),
        "pixel_length_mismatch": save(lies, folder / "lies.dcm"),
    }


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)
