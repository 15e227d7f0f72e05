"""Build the output instance: de-identified header + masked pixels + DIGIMASK block + de-id attributes.

The output is a DERIVED image of the same SOP class, uncompressed (Explicit VR Little Endian), with a
SourceImageSequence pointing at the source's remapped UID (PS3.3 C.7.6.1.1.2, purpose 121322).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from digimask.pipeline.deid.deidentify import Deidentified
from digimask.pipeline.deid.profile import (
    CLEAN_PIXEL_DATA_CODE,
    CLEAN_VISUAL_FEATURES_CODE,
)
from digimask.pipeline.dicom import private_block
from digimask.pipeline.dicom.private_block import FrameArray
from digimask.pipeline.dicom.video import EncodedVideo
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

import digimask

IMPLEMENTATION_CLASS_UID = "2.25.229623471838911937233519530893917416593"  # fixed for digimask
IMPLEMENTATION_VERSION = f"DIGIMASK_{digimask.__version__.replace('.', '')}"[:16]
# Ophthalmic Photography 8/16 Bit: Image Type value 3 is required when value 1 is DERIVED.
_VALUE3_REQUIRED_WHEN_DERIVED = {"1.2.840.10008.5.1.4.1.1.77.1.5.1", "1.2.840.10008.5.1.4.1.1.77.1.5.2"}
_PALETTE = ("RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
            "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
            "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
            "PaletteColorLookupTableUID", "SegmentedRedPaletteColorLookupTableData",
            "SegmentedGreenPaletteColorLookupTableData", "SegmentedBluePaletteColorLookupTableData")


def _code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def encode(
    deid: Deidentified,
    frames: np.ndarray | EncodedVideo,
    *,
    monochrome: bool,
    bits_stored: int,
    masker_name: str,
    cleans_recognizable_features: bool,
    params: Mapping[str, Any] | None = None,
    frame_params: FrameArray | None = None,
) -> Dataset:
    """``frames``: (n, rows, columns, 3) uint8 RGB from the masker, or a masked clip's H.264 stream;
    ``frame_params``: every frame's parameters (multi-frame and video)."""
    ds = deid.dataset
    sop_class = ds.SOPClassUID
    ds.SOPInstanceUID = deid.output_uid
    image_type = list(ds.get("ImageType") or ["ORIGINAL", "PRIMARY"]) + ["PRIMARY"]
    value3 = ["DIGITAL MASK"] if sop_class in _VALUE3_REQUIRED_WHEN_DERIVED else []  # defined (extensible) terms
    ds.ImageType = ["DERIVED", image_type[1]] + value3
    source = Dataset()
    source.ReferencedSOPClassUID = sop_class
    source.ReferencedSOPInstanceUID = deid.source_uid
    source.PurposeOfReferenceCodeSequence = Sequence([_code("121322", "Source image for image processing operation")])
    ds.SourceImageSequence = Sequence([source])
    ds.DerivationDescription = f"Pixel data replaced by digimask masker '{masker_name}'"
    if isinstance(frames, EncodedVideo):
        _write_video(ds, frames)
    else:
        _write_pixels(ds, frames, monochrome, bits_stored)

    codes = list(deid.codes)
    if cleans_recognizable_features:
        codes += [CLEAN_PIXEL_DATA_CODE, CLEAN_VISUAL_FEATURES_CODE]
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO" if cleans_recognizable_features else "YES"
    ds.DeidentificationMethod = [f"digimask {digimask.__version__}", "PS3.15 E.1 Basic Profile", f"pixels: {masker_name}"]
    ds.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in codes])
    if params is not None:
        private_block.write(ds, str(params["schema"]), masker_name, params, frame_params)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = frames.transfer_syntax if isinstance(frames, EncodedVideo) else ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    return ds


def _write_pixels(ds: Dataset, frames: np.ndarray, monochrome: bool, bits_stored: int) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"masker returned {frames.dtype} {frames.shape}; expected (n, rows, columns, 3) uint8")
    for kw in _PALETTE:
        ds.pop(kw, None)
    n, rows, cols, _ = frames.shape
    bits = 16 if bits_stored > 8 else 8
    if monochrome:
        pixels = np.round(frames.mean(axis=-1)).astype(np.uint8)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.pop("PlanarConfiguration", None)
    else:
        pixels = frames
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    if bits == 16:
        pixels = pixels.astype(np.uint16) << (bits_stored - 8)
    ds.Rows, ds.Columns = rows, cols
    if "NumberOfFrames" in ds or n > 1:
        ds.NumberOfFrames = n
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored if bits == 16 else 8, (bits_stored if bits == 16 else 8) - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"


def _write_video(ds: Dataset, clip: EncodedVideo) -> None:
    """MPEG-4 AVC/H.264 pixel data (PS3.5 8.2.8): one fragment-split stream, empty Basic Offset Table, 4:2:0."""
    for kw in _PALETTE:
        ds.pop(kw, None)
    ds.Rows, ds.Columns, ds.NumberOfFrames = clip.rows, clip.columns, clip.frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_PARTIAL_420", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ratio = clip.rows * clip.columns * 3 * clip.frames / max(1, len(clip.data))
    ds.LossyImageCompressionRatio = f"{ratio:.4g}"[:16]
    ds.LossyImageCompressionMethod = "ISO_14496_10"
    ds.PixelData = encapsulate([clip.data], has_bot=False)
    ds["PixelData"].VR = "OB"
