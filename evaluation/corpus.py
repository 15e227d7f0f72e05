"""An evaluation corpus: face photographs labelled with the identity of the person shown.

Photos are ordinary image files or DICOM files (``.dcm``, first frame). Either a folder with one
sub-folder per identity, or a folder holding ``manifest.csv`` with columns
``path,identity`` (paths relative to the folder) and optionally ``session``: photos of one person with
the same session label were taken at one sitting (frames of one video, say).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from digimask.pipeline.imaging import IMAGE_SUFFIXES, load
from PIL import Image

CORPUS_SUFFIXES = IMAGE_SUFFIXES | {".dcm"}
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Entry:
    path: Path
    identity: str
    session: str | None = None


class CorpusError(ValueError):
    """The folder is not a usable corpus."""


def load_corpus(root: Path) -> list[Entry]:
    """The corpus's entries, sorted by identity then path."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root} is not a folder")
    manifest = root / MANIFEST
    entries = _from_manifest(root, manifest) if manifest.is_file() else _from_folders(root)
    if not entries:
        raise CorpusError(f"no images in {root} (expected one sub-folder per identity, or {MANIFEST})")
    return sorted(entries, key=lambda e: (e.identity, str(e.path)))


def _from_folders(root: Path) -> list[Entry]:
    return [
        Entry(path, folder.name)
        for folder in root.iterdir()
        if folder.is_dir() and not folder.name.startswith(".")
        for path in folder.iterdir()
        if path.suffix.lower() in CORPUS_SUFFIXES
    ]


def _from_manifest(root: Path, manifest: Path) -> list[Entry]:
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "identity"} <= set(rows[0]):
        raise CorpusError(f"{manifest} needs the columns path,identity")
    entries = [Entry(root / row["path"], row["identity"].strip(), (row.get("session") or "").strip() or None)
               for row in rows]
    missing = [str(e.path) for e in entries if not e.path.is_file()]
    if missing:
        raise CorpusError(f"{len(missing)} file(s) in {manifest} do not exist, e.g. {missing[0]}")
    return entries


def read_image(path: Path, max_side: int | None = 1024) -> np.ndarray:
    """An image as the node's loader reads it (:func:`digimask.pipeline.imaging.load`), scaled down to
    ``max_side``; raises :class:`~digimask.pipeline.errors.Quarantined` when it cannot be read."""
    img = Image.fromarray(load(Path(path)).image)
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    return np.asarray(img).copy()
