"""Input files for the batch commands: images and DICOM files, folders searched recursively."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from digimask.pipeline.imaging import IMAGE_SUFFIXES, VIDEO_SUFFIXES

log = logging.getLogger(__name__)


def is_image_or_dicom(path: Path) -> bool:
    """An image or a clip by its suffix, or DICOM by suffix or by the ``DICM`` prefix after the preamble."""
    if path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES or path.suffix.lower() == ".dcm":
        return True
    with path.open("rb") as f:
        return f.read(132)[128:132] == b"DICM"


def collect_inputs(paths: Iterable[Path], skip_names: tuple[str, ...] = ()) -> list[Path]:
    """Files named directly, plus every image or DICOM file under named folders (except ``skip_names``
    endings, e.g. a command's own outputs); a missing path is logged and left out."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*"))
                         if p.is_file() and not p.name.endswith(skip_names) and is_image_or_dicom(p))
        elif path.exists():
            found.append(path)
        else:
            log.error("not found: %s", path)
    return found
