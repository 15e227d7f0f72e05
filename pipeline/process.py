"""One instance through the pipeline, in the README's order: de-identify -> decode -> mask (analyse, fit,
render) -> encode -> route.

Pure: a dataset in, a :class:`Processed` out; storage and the network belong to the node. Everything that
can go wrong raises :class:`~digimask.pipeline.errors.Quarantined` with an administrator-readable reason
(no PHI). The original pixels never leave this function: the output's pixels come only from a masker, and
a masker failure is quarantined, or blanked when ``pixels.on_failure = "blank"``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from digimask.config.settings import Settings
from digimask.pipeline.deid.deidentify import Deidentifier, removed_note
from digimask.pipeline.deid.pseudonym import Pseudonymizer, SubjectLookup
from digimask.pipeline.dicom.decode import FrameStream, decode, is_clip, stream
from digimask.pipeline.dicom.encode import encode
from digimask.pipeline.dicom.private_block import FrameArray
from digimask.pipeline.dicom.video import EncodedVideo, encode_h264
from digimask.pipeline.dicom.read import read
from digimask.pipeline.dicom.sop import SUPPORTED_SOP_CLASSES
from digimask.pipeline.errors import MaskingFailed, Quarantined
from digimask.pipeline.mask.maskers import BlankMasker, PixelMasker, create_masker, mask_frame
from digimask.pipeline.mask.video import ClipMasker
from digimask.pipeline.route import Router
from pydicom.dataset import Dataset


@dataclass
class Processed:
    dataset: Dataset
    destinations: list[str]
    pseudo_patient_id: str
    notes: dict[str, Any] = field(default_factory=dict)


class Processor:
    """Holds the stages' state (masker, keys); one per worker thread (maskers may own a GL context)."""

    def __init__(self, settings: Settings, masker: PixelMasker | None = None, lookup: SubjectLookup | None = None) -> None:
        """``lookup``: pre-assigned subject IDs, used before the keyed default (the node loads them)."""
        self.settings = settings
        pseudo = Pseudonymizer(settings.deid.key(), settings.deid.uid_root, lookup)
        self.deidentify = Deidentifier(settings.deid.options, pseudo, settings.deid.date_shift_max_days,
                                       settings.deid.keep_tags)
        self.masker = masker or create_masker(settings.pixels.masker, settings.pixels.options)
        self.router = Router(settings.routes)
        self.progress: Callable[[int, int], None] | None = None  # (frames done, of) while masking a clip

    def process(self, ds: Dataset, calling_ae: str = "", called_ae: str = "", *, route: bool = True) -> Processed:
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class not in SUPPORTED_SOP_CLASSES:
            raise Quarantined(f"unsupported SOP class {sop_class or '(missing)'}")
        if not ds.get("SOPInstanceUID"):
            raise Quarantined("missing SOP Instance UID")
        try:
            deid = self.deidentify(ds)
            clip = is_clip(ds)
            frames = self._frames(ds, clip)
        except Quarantined:
            raise
        except Exception as exc:  # a malformed header can fail anywhere in pydicom
            # only the type: the message of a header-parsing error may quote a value (PHI)
            raise Quarantined(f"malformed dataset ({type(exc).__name__})") from None
        masker, notes = self.masker, {"removed": removed_note(deid.removed)} if deid.removed else {}
        try:
            masked, params, per_frame, clip_notes = self._mask_any(masker, frames, deid.dataset, clip)
        except MaskingFailed as exc:
            if self.settings.pixels.on_failure != "blank":
                raise Quarantined(f"masking failed: {exc.reason}") from None
            masker, notes["mask_failure"] = BlankMasker(), exc.reason
            frames = self._frames(ds, clip)  # a clip's stream is spent: decode it again
            masked, params, per_frame, clip_notes = self._mask_any(masker, frames, deid.dataset, clip)
        out = encode(
            deid, masked, monochrome=frames.monochrome, bits_stored=frames.bits_stored,
            masker_name=masker.name, cleans_recognizable_features=masker.cleans_recognizable_features,
            params=params, frame_params=per_frame,
        )
        if clip_notes:
            notes["clip"] = clip_notes  # frames measured, held, drawn shut; the smoothing window
        destinations = self.router.destinations(ds, calling_ae, called_ae) if route else []
        if route and not destinations:
            raise Quarantined("no routing rule matched")
        return Processed(out, destinations, deid.pseudo_patient_id, notes)

    def _frames(self, ds: Dataset, clip: bool):
        if clip:
            return stream(ds, self.settings.storage.max_pixels, self.settings.video.max_frames)
        return decode(ds, self.settings.storage.max_pixels)

    def _mask_any(self, masker: PixelMasker, frames, ds: Dataset, clip: bool
                  ) -> tuple[np.ndarray | EncodedVideo, dict | None, FrameArray | None, dict[str, Any]]:
        """Masked pixels, the block's parameters, per-frame parameters (clips) and clip notes."""
        if clip:
            return self._mask_clip(masker, frames, ds)
        return (*self._mask(masker, frames.rgb, ds), None, {})

    def _mask_clip(self, masker: PixelMasker, clip: FrameStream, ds: Dataset
                   ) -> tuple[np.ndarray | EncodedVideo, dict | None, FrameArray | None, dict[str, Any]]:
        """Multi-frame and video: every frame masked in turn (``pipeline/mask/video.py``), each frame's
        parameters kept; a video is re-encoded as it is masked."""
        progress = (lambda done: self.progress(done, clip.count)) if self.progress else None
        clip_masker = ClipMasker(masker, self.settings.video, clip.rate_hz, clip.count, progress)
        frames = clip_masker.run(clip.frames, ds)
        if clip.video:
            masked = encode_h264(frames, clip.columns, clip.rows, clip.rate_hz, self.settings.video.crf)
        else:
            masked = np.stack(list(frames))
        return masked, clip_masker.result.params, clip_masker.result.frames, clip_masker.result.notes

    @staticmethod
    def _mask(masker: PixelMasker, frames: np.ndarray, ds: Dataset) -> tuple[np.ndarray, dict | None]:
        out, params = [], None
        for frame in frames:
            result = mask_frame(masker, frame, ds)
            out.append(np.asarray(result.pixels))
            params = params or (dict(result.params) if result.params is not None else None)
        return np.stack(out), params


def process_file(path: Path, settings: Settings, processor: Processor | None = None) -> Dataset:
    """File mode (``digimask mask IN OUT``): de-identify and mask one file without routing."""
    processor = processor or Processor(settings)
    return processor.process(read(path), route=False).dataset
