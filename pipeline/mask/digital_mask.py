"""The digital mask, in one pass: analyse -> fit -> check the drawn geometry -> render.

Every avatar is the same neutral template; only the lid apertures and contours, the canthi, gaze, iris
size and head pose follow the patient. The fit draws what the analysis measured (``fit.py``), and before
any pixel is rendered the avatar's own lid margins, limbus and canthi are projected into the image and
measured with the analysis' code (``drawn.py``): a mask whose drawn MRD1/MRD2, fissure, iris or gaze
differ from the patient's beyond 0.1 mm / 0.5 degrees (or a binocular deviation beyond 1 PD) is refused
with the numbers. The render is never analysed in the loop; ``strict`` adds an independent reading (the
analysis run on the render, within the acceptance limits) as an opt-in check.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, get_args

import numpy as np
from pydicom.dataset import Dataset

from digimask.config.settings import MultiFacePolicy
from digimask.pipeline.dicom.header import laterality, pixel_spacing_mm
from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.eyes.analyse import Analysis, AnalysisOptions, analyse
from digimask.pipeline.eyes.measure import ACCEPT_GAZE_DEG, ACCEPT_MRD_MM
from digimask.pipeline.eyes.quality import QualityThresholds
from digimask.pipeline.eyes.track import FaceTracker
from digimask.pipeline.imaging import luminance
from digimask.pipeline.mask.drawn import DrawnCheck, check_drawn
from digimask.pipeline.mask.fit import fit, fit_batch
from digimask.pipeline.mask.maskers import MaskResult
from digimask.pipeline.mask.params import AvatarParams, clean_measurements
from digimask.pipeline.mask.render import render


# A clip's frames are fitted this many at a time: the fit's cost is mostly per call (8 frames: 7-10 ms a
# frame, one alone: 41-45 ms, here).
FIT_BATCH = 8


@dataclass(frozen=True)
class Fidelity:
    """Largest differences between the analysis' reading of a mask and of the patient (mm, degrees)."""

    mrd_mm: float
    gaze_deg: float

    def score(self) -> float:
        """1.0 at the acceptance limits (``ACCEPT_MRD_MM``, ``ACCEPT_GAZE_DEG``)."""
        return max(self.mrd_mm / ACCEPT_MRD_MM, self.gaze_deg / ACCEPT_GAZE_DEG)

    def to_dict(self) -> dict[str, float]:
        return {"mrd_mm": round(self.mrd_mm, 3), "gaze_deg": round(self.gaze_deg, 3)}


def fidelity(original: Analysis, masked: Analysis) -> Fidelity:
    """Compare MRD1/MRD2 and gaze of every eye measured on both; a missing eye is infinitely wrong."""
    mrd, gaze = 0.0, 0.0
    for side, m in original.measurements.eyes.items():
        k = masked.measurements.eyes.get(side)
        if k is None:
            return Fidelity(float("inf"), float("inf"))
        mrd = max(mrd, abs(k.mrd1_mm - m.mrd1_mm), abs(k.mrd2_mm - m.mrd2_mm))
        gaze = max(gaze, abs(k.gaze_h_deg - m.gaze_h_deg), abs(k.gaze_v_deg - m.gaze_v_deg))
    return Fidelity(float(mrd), float(gaze))


@dataclass(frozen=True)
class Fitted:
    """The avatar for one image, checked but not rendered."""

    params: AvatarParams
    analysis: Analysis  # the patient's
    check: DrawnCheck  # the drawn geometry against the patient's measurements


@dataclass(frozen=True)
class Masked:
    pixels: np.ndarray
    params: AvatarParams
    analysis: Analysis
    check: DrawnCheck


def fit_image(image: np.ndarray, *, pixel_spacing_mm: float | None = None, options: AnalysisOptions | None = None,
              backend: str = "moderngl") -> Fitted:
    """Analyse, fit and check one RGB image, without rendering it. Raises ``Rejected``/``MaskingFailed``
    when it cannot be masked exactly and safely."""
    patient = analyse(image, pixel_spacing_mm=pixel_spacing_mm, options=options)
    return checked(fit(patient), patient, backend)


def checked(params: AvatarParams, patient: Analysis, backend: str) -> Fitted:
    """The fitted avatar for ``patient`` if its drawn geometry passes (``drawn.check_drawn``)."""
    params = replace(params, renderer=backend)
    check = check_drawn(params, patient)
    if not check.ok:
        raise MaskingFailed(check.reason(), "drawn_check")
    return Fitted(params, patient, check)


def mask_image(image: np.ndarray, *, pixel_spacing_mm: float | None = None, options: AnalysisOptions | None = None,
               backend: str = "moderngl") -> Masked:
    """Mask one RGB image: :func:`fit_image`, then render."""
    f = fit_image(image, pixel_spacing_mm=pixel_spacing_mm, options=options, backend=backend)
    return Masked(render(f.params), f.params, f.analysis, f.check)


@contextmanager
def _failing_closed() -> Iterator[None]:
    """Never let an unexpected failure pass the original pixels on."""
    try:
        yield
    except MaskingFailed:
        raise
    except Exception as exc:
        raise MaskingFailed(f"digital mask failed: {type(exc).__name__}") from exc


def render_params(params: Mapping[str, Any], backend: str | None = None) -> np.ndarray:
    """Re-create a mask image from stored parameters alone (e.g. the DIGIMASK private block).

    ``backend`` overrides the renderer the parameters name (for comparison).
    """
    return render(AvatarParams.from_dict(dict(params)), backend)


class DigitalMask:
    """The :class:`~digimask.pipeline.mask.maskers.PixelMasker` that replaces the face with the avatar."""

    name = "digital_mask"
    cleans_recognizable_features = True

    def __init__(self, renderer: str = "moderngl", strict: bool = False,
                 multiple_faces: MultiFacePolicy = "largest") -> None:
        """``strict``: also refuse a mask that the analysis, run on the render, does not read within the
        acceptance limits. ``multiple_faces``: mask the largest face, or refuse ("reject") several."""
        if multiple_faces not in get_args(MultiFacePolicy):
            raise ValueError(f"multiple_faces must be one of {get_args(MultiFacePolicy)}, not {multiple_faces!r}")
        self.renderer = renderer
        self.strict = strict
        self.quality = QualityThresholds(multiple_faces=multiple_faces)

    def tracker(self) -> FaceTracker:
        """A new clip's face tracker, for :meth:`fit` or :meth:`fit_many` on its frames in order."""
        return FaceTracker()

    def fit(self, image: np.ndarray, ds: Dataset, tracker: FaceTracker | None = None) -> dict[str, Any]:
        """The parameters :meth:`mask` stores, without rendering (a clip renders its smoothed parameters):
        analyse (with ``tracker``: the face followed from the clip's previous frame), fit, drawn check. With
        ``strict`` the frame is rendered all the same, for the independent reading."""
        result = next(self.fit_many([image], ds, tracker, batch=1))
        if isinstance(result, MaskingFailed):
            raise result
        return result

    def fit_many(self, frames: Iterable[np.ndarray], ds: Dataset, tracker: FaceTracker | None = None,
                 batch: int = FIT_BATCH) -> Iterator[dict[str, Any] | MaskingFailed]:
        """:meth:`fit` for frames in order, as a stream: each frame's parameters, or the failure that
        refuses it. The fits of ``batch`` frames at a time are solved together (``fit.fit_batch``; a
        batch's solution differs from single fits by the parameters' rounding, 1e-4)."""
        pending: list[tuple[np.ndarray, np.ndarray, Analysis] | MaskingFailed] = []
        for image in frames:
            try:
                with _failing_closed():
                    pending.append((image, *self._analyse(image, ds, tracker)))
            except MaskingFailed as exc:
                pending.append(exc)
            if len(pending) == batch:
                yield from self._fitted(pending)
                pending = []
        if pending:
            yield from self._fitted(pending)

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        with _failing_closed():
            rgb, patient = self._analyse(image, ds)
            fitted = checked(fit(patient), patient, self.renderer)
            pixels = render(fitted.params)
        notes = self._notes(fitted, pixels)
        params = self._stored(fitted.params, image, rgb)
        if params.greyscale:
            pixels = luminance(pixels)
            if image.ndim == 2:
                pixels = pixels[..., 0]
        if image.ndim == 3 and image.shape[2] == 4:
            pixels = np.dstack([pixels, np.full(image.shape[:2], 255, np.uint8)])
        return MaskResult(pixels, params.to_dict(), notes)

    def _analyse(self, image: np.ndarray, ds: Dataset, tracker: FaceTracker | None = None
                 ) -> tuple[np.ndarray, Analysis]:
        """The image as RGB, and the patient's analysis."""
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise MaskingFailed(f"unsupported pixel data {image.shape} {image.dtype} for the digital mask",
                                "unsupported_image")
        rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
        options = AnalysisOptions(laterality=laterality(ds), quality=self.quality)
        return rgb, (tracker.analyse if tracker else analyse)(rgb, pixel_spacing_mm=pixel_spacing_mm(ds),
                                                               options=options)

    def _fitted(self, pending: list[tuple[np.ndarray, np.ndarray, Analysis] | MaskingFailed]
                ) -> Iterator[dict[str, Any] | MaskingFailed]:
        """The analysed frames of ``pending`` fitted together and checked one by one; failures pass."""
        analysed = [p for p in pending if not isinstance(p, MaskingFailed)]
        try:
            with _failing_closed():
                solved: list[AvatarParams | MaskingFailed] = fit_batch([p[2] for p in analysed]) if analysed else []
        except MaskingFailed as exc:
            solved = [exc] * len(analysed)
        params = iter(solved)
        for p in pending:
            if not isinstance(p, MaskingFailed):
                image, rgb, patient = p
                p = self._checked(next(params), image, rgb, patient)
            yield p

    def _checked(self, params: AvatarParams | MaskingFailed, image: np.ndarray, rgb: np.ndarray,
                 patient: Analysis) -> dict[str, Any] | MaskingFailed:
        if isinstance(params, MaskingFailed):
            return params
        try:
            with _failing_closed():
                fitted = checked(params, patient, self.renderer)
                if self.strict:
                    self._independent_reading(fitted, render(fitted.params))
                return self._stored(fitted.params, image, rgb).to_dict()
        except MaskingFailed as exc:
            exc.measurements = clean_measurements(patient.measurements.to_dict())
            return exc

    def _notes(self, fitted: Fitted, pixels: np.ndarray | None) -> dict[str, Any]:
        """The audit notes; with ``strict``, after the independent reading of the render ``pixels``."""
        notes: dict[str, Any] = {"mode": fitted.params.mode, "drawn_check": fitted.check.to_dict()}
        if self.strict:
            notes["fidelity"] = self._independent_reading(fitted, pixels).to_dict()
        return notes

    @staticmethod
    def _stored(params: AvatarParams, image: np.ndarray, rgb: np.ndarray) -> AvatarParams:
        """The parameters as stored: greyscale stays greyscale."""
        if image.ndim == 2 or (rgb[..., :1] == rgb[..., 1:3]).all():
            return replace(params, greyscale=True)
        return params

    def _independent_reading(self, fitted: Fitted, pixels: np.ndarray) -> Fidelity:
        patient = fitted.analysis
        options = AnalysisOptions(mode=patient.mode, quality=self.quality,
                                  laterality=next(iter(patient.eyes)) if len(patient.eyes) == 1 else None)
        try:
            found = analyse(pixels, pixel_spacing_mm=patient.measurements.scale.mm_per_px
                            if patient.measurements.scale.source == "pixel_spacing" else None, options=options)
        except MaskingFailed:
            raise MaskingFailed("mask fidelity not confirmed: the mask cannot be measured", "fidelity") from None
        fid = fidelity(patient, found)
        if fid.score() > 1.0:
            raise MaskingFailed(f"mask fidelity not confirmed (limits {ACCEPT_MRD_MM} mm, {ACCEPT_GAZE_DEG} deg): "
                                f"{fid.to_dict()}", "fidelity")
        return fid
