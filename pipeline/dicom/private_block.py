"""The DIGIMASK private block: the parameters of the pixel masker, stored in the output instance.

Layout (PS3.5 7.8; odd group, reserved by the private creator ``DIGIMASK 1.0``), written Explicit VR:

============  ====  =====================================================
element       VR    content
============  ====  =====================================================
(0071,xx10)   LO    schema id, e.g. ``digimask.params/1``
(0071,xx11)   LO    masker name (``digital_mask``, ``blank`` ...)
(0071,xx12)   UT    parameters as canonical JSON (sorted keys, no spaces); of the first frame in a series
(0071,xx13)   LO    multi-frame only: per-frame array schema, e.g. ``digimask.frames/1``
(0071,xx14)   OB    multi-frame only: per-frame values, float32 little endian, frames x columns
(0071,xx15)   OB    multi-frame only: per-frame status, one byte a frame (the array schema's codes)
============  ====  =====================================================

A reader that knows only (0071,xx10-12) still renders the first frame; the per-frame array's columns
and status codes are defined by its schema (``digimask.pipeline.mask.video``).

The block is declared SAFE in PrivateDataElementCharacteristicsSequence (0008,0300), so a downstream
de-identifier running Retain Safe Private Option keeps it. It never holds raw landmarks or anything
from which the patient's face shape could be rebuilt: that is the masker's contract.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

GROUP = 0x0071
CREATOR = "DIGIMASK 1.0"
_SCHEMA, _MASKER, _PARAMS = 0x10, 0x11, 0x12
_FRAMES_SCHEMA, _FRAMES_VALUES, _FRAMES_STATUS = 0x13, 0x14, 0x15


@dataclass(frozen=True)
class FrameArray:
    """Every frame's parameters as numbers: ``values`` (frames, columns) float32, ``status`` (frames,) uint8."""

    schema: str
    values: np.ndarray
    status: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.status.shape != (len(self.values),):
            raise ValueError(f"frame array {self.values.shape} with status {self.status.shape}")


def write(ds: Dataset, schema: str, masker: str, params: Mapping[str, Any], frames: FrameArray | None = None) -> None:
    """Write (or overwrite) the block and declare it SAFE."""
    block = ds.private_block(GROUP, CREATOR, create=True)
    block.add_new(_SCHEMA, "LO", schema)
    block.add_new(_MASKER, "LO", masker)
    block.add_new(_PARAMS, "UT", json.dumps(params, sort_keys=True, separators=(",", ":")))
    if frames is not None:
        block.add_new(_FRAMES_SCHEMA, "LO", frames.schema)
        block.add_new(_FRAMES_VALUES, "OB", _even(frames.values.astype("<f4").tobytes()))
        block.add_new(_FRAMES_STATUS, "OB", _even(frames.status.astype(np.uint8).tobytes()))
    _declare_safe(ds, block.block_start)


def read_frames(ds: Dataset) -> FrameArray | None:
    """The per-frame array, or ``None`` for a single-frame block (or one written before it existed)."""
    try:
        block = ds.private_block(GROUP, CREATOR)
        schema = str(block[_FRAMES_SCHEMA].value)
        status = np.frombuffer(block[_FRAMES_STATUS].value, np.uint8)
        values = np.frombuffer(block[_FRAMES_VALUES].value, "<f4")
    except KeyError:
        return None
    n = int(ds.get("NumberOfFrames", 0) or 0) or len(status)
    status = status[:n]  # OB values are padded to an even length
    if n == 0 or len(status) < n or values.size % n:
        raise ValueError(f"per-frame array of {values.size} values does not fit {n} frames")
    return FrameArray(schema, values.reshape(n, -1).astype(np.float32), status)


def read(ds: Dataset) -> tuple[str, str, dict[str, Any]] | None:
    """Return ``(schema, masker, params)``, or ``None`` when the instance has no DIGIMASK block."""
    try:
        block = ds.private_block(GROUP, CREATOR)
    except KeyError:
        return None
    return (
        str(block[_SCHEMA].value),
        str(block[_MASKER].value),
        json.loads(block[_PARAMS].value),
    )


def _even(data: bytes) -> bytes:
    return data + b"\0" * (len(data) % 2)


def _declare_safe(ds: Dataset, block_start: int) -> None:
    items = [
        item for item in ds.get("PrivateDataElementCharacteristicsSequence", [])
        if not (item.get("PrivateGroupReference") == GROUP and item.get("PrivateCreatorReference") == CREATOR)
    ]
    item = Dataset()
    item.PrivateGroupReference = GROUP
    item.PrivateCreatorReference = CREATOR
    item.BlockIdentifyingInformationStatus = "SAFE"
    items.append(item)
    ds.PrivateDataElementCharacteristicsSequence = Sequence(items)
