"""The DIGIMASK private block: the parameters of the pixel masker, stored in the output instance.

Layout (PS3.5 7.8; odd group, reserved by the private creator ``DIGIMASK 1.0``), written Explicit VR:

============  ====  =====================================================
element       VR    content
============  ====  =====================================================
(0071,xx10)   LO    schema id, e.g. ``digimask.params/1``
(0071,xx11)   LO    masker name (``digital_mask``, ``blank`` ...)
(0071,xx12)   UT    parameters as canonical JSON (sorted keys, no spaces)
============  ====  =====================================================

The block is declared SAFE in PrivateDataElementCharacteristicsSequence (0008,0300), so a downstream
de-identifier running Retain Safe Private Option keeps it. It never holds raw landmarks or anything
from which the patient's face shape could be rebuilt: that is the masker's contract.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

GROUP = 0x0071
CREATOR = "DIGIMASK 1.0"
_SCHEMA, _MASKER, _PARAMS = 0x10, 0x11, 0x12


def write(ds: Dataset, schema: str, masker: str, params: Mapping[str, Any]) -> None:
    """Write (or overwrite) the block and declare it SAFE."""
    block = ds.private_block(GROUP, CREATOR, create=True)
    block.add_new(_SCHEMA, "LO", schema)
    block.add_new(_MASKER, "LO", masker)
    block.add_new(_PARAMS, "UT", json.dumps(params, sort_keys=True, separators=(",", ":")))
    _declare_safe(ds, block.block_start)


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
