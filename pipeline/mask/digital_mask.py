"""The digital mask: analyse -> fit -> render, with the analysis re-run on the mask to close the loop.

The rendered avatar shares one neutral template with every other mask; only the lid apertures, gaze,
iris size and head pose follow the patient. Because the clinic measures the mask with the same analysis
stage, the mask is checked by it: the eye landmarks found on the render are compared with the patient's,
and the fit's targets are corrected by the difference, a damped quasi-Newton iteration that cancels the
detector's bias on synthetic eyes: per eye, lid and iris corrections are divided by the detector's
response to them, learned from round to round (Broyden). The fitted head angles are corrected too, until
the mask's head pose reads as the patient's. A round that comes out worse is dropped and the next one
steps again from the best round with half the step (backtracking). The best round is kept and its
residual error is reported. By default the two eyes turn up and down only together (``keep_alignment``):
the analysis follows a drawn vertical turn about a quarter of the way, so refining each eye's vertical gaze
on its own drew vertical squints out of noise in the readings.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, get_args

import numpy as np
from digimask.config.settings import Alignment, MultiFacePolicy
from digimask.pipeline.dicom.header import laterality, pixel_spacing_mm
from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.eyes.analyse import Analysis, AnalysisOptions, analyse
from digimask.pipeline.eyes.landmarks import SIDES, EyeLandmarks
from digimask.pipeline.eyes.measure import (
    ACCEPT_GAZE_DEG,
    ACCEPT_MRD_MM,
    eye_axes,
    head_rotation,
    offset_from_gaze,
)
from digimask.pipeline.eyes.quality import QualityThresholds
from digimask.pipeline.imaging import luminance
from digimask.pipeline.mask.fit import fit, fit_head
from digimask.pipeline.mask.maskers import MaskResult
from digimask.pipeline.mask.params import AvatarParams
from digimask.pipeline.mask.render import render
from pydicom.dataset import Dataset

# MediaPipe's iris model reads the rendered limbus about 20% inside the drawn one (patient / mask radius at
# the first render: 1.18-1.29 on astronaut, grace_hopper, obama): the fit draws the iris that much larger.
IRIS_DETECTION_BIAS = 1.22
# It also reads a rendered upper lid about 0.17 iris radii above the drawn margin (0.11-0.27 on 8 eyes of
# grace_hopper, obama, biden, takeo; real lids hide the top of the opening under their lashes).
UPPER_LID_DETECTION_BIAS = 0.17
IRIS_GAIN, LID_GAIN = 1.2, 1.5  # first refinement gains: the detector follows a rendered iris/lid ~1/gain as far
REFINE_ROUNDS = 5  # at most; each is one analysis + fit + render
GOOD_ENOUGH = 0.8  # stop refining once the worst error is below 80% of the acceptance limits
# Guards on the learned detector response: steps shorter than MIN_STEP_PX are noise; a response below
# MIN_RESPONSE (the detector barely follows) or an ill-conditioned one would make the next step explode.
MIN_STEP_PX, MIN_RESPONSE, MAX_CONDITION = 0.1, 0.3, 10.0
# Which difference between the two eyes the refinement keeps from the direct fit, i.e. turns the eyes only
# together in: none, the vertical one (default), or both (docs/digital_mask.md, "The refinement loop and the
# drawn eyes"). The analysis follows a drawn vertical turn only a quarter of the way, so refining each eye's
# vertical gaze on its own draws vertical squints out of the reading's noise.
_SHARED = {"none": (), "vertical": (3,), "both": (2, 3)}  # the iris controls both eyes share (see _EyeControls)
_ANGLES = {2: "gaze_yaw_deg", 3: "gaze_pitch_deg"}


@dataclass(frozen=True)
class Fidelity:
    """Largest differences between the mask's measurements and the patient's (mm, degrees)."""

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


def _taper(lid: np.ndarray, eye: EyeLandmarks) -> np.ndarray:
    """Per-point weight that is 1 over the middle of the lid and 0 at the canthi (which are fitted apart)."""
    axis = eye.lateral_canthus - eye.medial_canthus
    t = (np.asarray(lid, float) - eye.medial_canthus) @ axis / (axis @ axis)
    return np.clip(6.0 * t * (1.0 - t), 0.0, 1.0)[:, None]


def _initial_target(eye: EyeLandmarks) -> EyeLandmarks:
    """The patient's eye with the detector's known biases on rendered eyes taken out."""
    _, v = eye_axes({eye.side: eye})
    upper = np.asarray(eye.upper_lid, float)
    return replace(
        eye,
        upper_lid=upper - _taper(upper, eye) * (UPPER_LID_DETECTION_BIAS * eye.iris_radius) * v,
        iris_radius=eye.iris_radius * IRIS_DETECTION_BIAS,
    )


@dataclass(frozen=True)
class _EyeControls:
    """Offsets (image px) on one eye's initial fit target, the refinement loop's controls.

    ``c``: upper lid up, lower lid down (over the middle of each lid), iris along the eye's u and v axes
    (the lids follow the iris's v move, so the MRDs stay put); ``canthi``: medial and lateral canthus moves.
    """

    start: EyeLandmarks
    c: np.ndarray = field(default_factory=lambda: np.zeros(4))
    canthi: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))

    def target(self) -> EyeLandmarks:
        eye = self.start
        u, v = eye_axes({eye.side: eye})
        upper_lid, lower_lid = np.asarray(eye.upper_lid, float), np.asarray(eye.lower_lid, float)
        return replace(
            eye,
            upper_lid=upper_lid + _taper(upper_lid, eye) * ((self.c[0] + self.c[3]) * v),
            lower_lid=lower_lid + _taper(lower_lid, eye) * ((self.c[3] - self.c[1]) * v),
            iris_center=eye.iris_center + self.c[2] * u + self.c[3] * v,
            medial_canthus=eye.medial_canthus + self.canthi[0],
            lateral_canthus=eye.lateral_canthus + self.canthi[1],
        )

    def stepped(self, step: np.ndarray, canthus_error: np.ndarray, damping: float) -> "_EyeControls":
        return replace(self, c=self.c + damping * step, canthi=self.canthi + damping * IRIS_GAIN * canthus_error)


class _Response:
    """The detector's response on the mask to one eye's controls: d(measurement, px)/d(control, px).

    It starts at the typical gains and is updated with Broyden's rank-one rule from each round's observed
    change: how far the detector follows a rendered lid or iris differs per eye, and the two are coupled
    (a lowered lid pulls the detected iris centre down with it).
    """

    def __init__(self) -> None:
        self.jacobian = np.diag([1.0 / LID_GAIN] * 2 + [1.0 / IRIS_GAIN] * 2)

    def learn(self, dc: np.ndarray, de: np.ndarray) -> None:
        """A control change ``dc`` changed the error (patient minus mask) by ``de``."""
        if float(dc @ dc) < MIN_STEP_PX**2:
            return  # a step within the detector's noise says nothing about its gain
        j = self.jacobian + np.outer(-de - self.jacobian @ dc, dc) / float(dc @ dc)
        if np.all(np.diag(j) >= MIN_RESPONSE) and np.linalg.cond(j) < MAX_CONDITION:
            self.jacobian = j

    def step(self, e: np.ndarray) -> np.ndarray:
        """The control change that cancels the error ``e`` under the current estimate."""
        return np.linalg.solve(self.jacobian, e)


def _errors(side: str, patient: Analysis, found: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """One eye's error vector (px; see ``_EyeControls``) and its canthus errors (medial, lateral; px)."""
    pm, fm = patient.measurements.eyes[side], found.measurements.eyes[side]
    k = found.measurements.scale.mm_per_px
    u, v = eye_axes(found.eyes)
    rot = head_rotation(found.head_pose, u, v)
    shift_mm = offset_from_gaze(pm.gaze_h_deg, pm.gaze_v_deg, rot) - offset_from_gaze(fm.gaze_h_deg, fm.gaze_v_deg, rot)
    iris = shift_mm * (1.0, -1.0) / k  # image pixels (y down)
    e = np.array([(pm.mrd1_mm - fm.mrd1_mm) / k, (pm.mrd2_mm - fm.mrd2_mm) / k, iris @ u, iris @ v])
    p_eye, f_eye = patient.eyes[side], found.eyes[side]
    canthi = np.array([p_eye.medial_canthus - f_eye.medial_canthus, p_eye.lateral_canthus - f_eye.lateral_canthus])
    return e, canthi


def _joint_steps(response: Mapping[str, _Response], errors: Mapping[str, np.ndarray],
                 shared: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Both eyes' control steps when the controls ``shared`` take one value change for the two eyes: the
    least-squares cancellation of both eyes' errors (lids and the other iris control still per eye)."""
    own = [i for i in range(4) if i not in shared]
    a = np.zeros((8, 2 * len(own) + len(shared)))
    for k, side in enumerate(SIDES):
        j = response[side].jacobian
        a[4 * k:4 * k + 4, k * len(own):(k + 1) * len(own)] = j[:, own]
        a[4 * k:4 * k + 4, 2 * len(own):] = j[:, list(shared)]
    x = np.linalg.lstsq(a, np.concatenate([errors["right"], errors["left"]]), rcond=None)[0]
    steps = {}
    for k, side in enumerate(SIDES):
        step = np.zeros(4)
        step[own], step[list(shared)] = x[k * len(own):(k + 1) * len(own)], x[2 * len(own):]
        steps[side] = step
    return steps


def _aligned_like(params: AvatarParams, direct: AvatarParams, names: tuple[str, ...]) -> AvatarParams:
    """Both eyes' angles ``names`` re-aimed by their mean change from ``direct``, so the difference between
    the eyes in them stays the direct fit's."""
    if set(params.eyes) != {"right", "left"}:
        return params
    mean = {n: (getattr(params.eyes["right"], n) - getattr(direct.eyes["right"], n)
                + getattr(params.eyes["left"], n) - getattr(direct.eyes["left"], n)) / 2 for n in names}
    eyes = {side: replace(e, **{n: round(getattr(direct.eyes[side], n) + mean[n], 4) for n in names})
            for side, e in params.eyes.items()}
    return replace(params, eyes=eyes)


def _pose_error(patient: Analysis, found: Analysis) -> np.ndarray:
    """Patient's head angles minus the mask's (yaw, pitch, roll degrees); zero without a head pose."""
    if patient.head_pose is None or found.head_pose is None:
        return np.zeros(3)
    p, f = patient.head_pose, found.head_pose
    return np.array([p.yaw_deg - f.yaw_deg, p.pitch_deg - f.pitch_deg, p.roll_deg - f.roll_deg])


@dataclass(frozen=True)
class Masked:
    pixels: np.ndarray
    params: AvatarParams
    analysis: Analysis
    fidelity: Fidelity | None  # None when the mask could not be measured at all
    iterations: int
    direct: AvatarParams | None = None  # the first round's fit, straight from the patient's landmarks

    @property
    def score(self) -> float:
        return self.fidelity.score() if self.fidelity else float("inf")

    def refinement_change(self) -> dict[str, float]:
        """How far the refinement moved the drawn eyes from the direct fit: the largest change of an eye's
        rotation (degrees), of the two eyes' difference in rotation (a drawn squint the direct fit did not
        have) and of a lid's height over the middle of the eye (mm). Zero for the first round's mask."""
        if self.direct is None:
            return {"gaze_deg": 0.0, "vergence_deg": 0.0, "lid_mm": 0.0}
        change = self._gaze_change()
        lids = [abs(e.upper_lid_mm[0] - self.direct.eyes[side].upper_lid_mm[0]) for side, e in self.params.eyes.items()]
        lids += [abs(e.lower_lid_mm[0] - self.direct.eyes[side].lower_lid_mm[0]) for side, e in self.params.eyes.items()]
        return {"gaze_deg": round(float(np.abs(np.stack(list(change.values()))).max()), 2),
                "vergence_deg": round(float(self.vergence_change().max()), 2), "lid_mm": round(float(max(lids)), 2)}

    def vergence_change(self) -> np.ndarray:
        """How far the refinement changed the drawn difference between the eyes' rotations (horizontal,
        vertical; degrees): zero without two eyes or for the first round's mask."""
        change = self._gaze_change() if self.direct is not None else {}
        return np.abs(change["right"] - change["left"]) if len(change) == 2 else np.zeros(2)

    def _gaze_change(self) -> dict[str, np.ndarray]:
        """Each eye's rotation (yaw, pitch degrees) minus the direct fit's."""
        assert self.direct is not None
        gaze = lambda e: np.array([e.gaze_yaw_deg, e.gaze_pitch_deg])  # noqa: E731
        return {side: gaze(e) - gaze(self.direct.eyes[side]) for side, e in self.params.eyes.items()}


def mask_image(image: np.ndarray, *, pixel_spacing_mm: float | None = None, options: AnalysisOptions | None = None,
               refine: int = REFINE_ROUNDS, backend: str = "moderngl", keep_alignment: Alignment = "vertical") -> Masked:
    """Mask one RGB image. Raises ``Rejected``/``MaskingFailed`` when it cannot be masked safely.

    ``keep_alignment``: in which direction ("vertical", "both", or "none") the refinement turns the two
    eyes only together, keeping the direct fit's difference between them: no drawn squint in that
    direction that the direct fit did not have, at some cost in fidelity as the analysis measures it.
    """
    shared = _SHARED[keep_alignment]
    patient = analyse(image, pixel_spacing_mm=pixel_spacing_mm, options=options)
    check_options = replace(options or AnalysisOptions(), mode=patient.mode,
                            laterality=next(iter(patient.eyes)) if len(patient.eyes) == 1 else None)
    controls = {side: _EyeControls(_initial_target(eye)) for side, eye in patient.eyes.items()}
    response = {side: _Response() for side in patient.eyes}
    turn = np.zeros(3)  # added to the fitted head angles, so that the mask's head pose reads as the patient's
    best: Masked | None = None
    best_controls, best_turn, best_found, best_errors, damping = controls, turn, None, None, 1.0
    head = fit_head(patient) if patient.mode == "face" else None  # fitted to FaceMesh points, which never change
    for iteration in range(refine + 1):
        target = replace(patient, eyes={side: ctl.target() for side, ctl in controls.items()})
        params = replace(fit(target, turn, head, best.params if best else None), renderer=backend)
        direct = params if best is None else best.direct
        if shared:
            params = _aligned_like(params, direct, tuple(_ANGLES[i] for i in shared))
        pixels = render(params)
        try:
            found = analyse(pixels, pixel_spacing_mm=pixel_spacing_mm, options=check_options)
        except MaskingFailed:
            found = None
        comparable = found is not None and set(found.eyes) == set(patient.eyes)
        errors = {side: _errors(side, patient, found) for side in patient.eyes} if comparable else None
        if errors is not None and best_errors is not None:
            for side in patient.eyes:
                response[side].learn(controls[side].c - best_controls[side].c, errors[side][0] - best_errors[side][0])
        fid = fidelity(patient, found) if found is not None else None
        score = fid.score() if fid is not None else float("inf")
        if best is None or score < best.score:
            best, best_controls, best_turn, best_found, best_errors = (
                Masked(pixels, params, patient, fid, iteration, direct), controls, turn, found, errors)
            damping *= 0.75 if iteration else 1.0  # the detector's response is not linear
        else:
            damping *= 0.5  # overshot: step again from the best round, shorter
        if best_errors is None or best.score <= GOOD_ENOUGH:
            break
        if shared and set(patient.eyes) == {"right", "left"}:
            steps = _joint_steps(response, {side: e for side, (e, _) in best_errors.items()}, shared)
        else:
            steps = {side: response[side].step(best_errors[side][0]) for side in patient.eyes}
        controls = {side: best_controls[side].stepped(steps[side], best_errors[side][1], damping) for side in patient.eyes}
        turn = best_turn + damping * _pose_error(patient, best_found)
    assert best is not None
    return best


def render_params(params: Mapping[str, Any], backend: str | None = None) -> np.ndarray:
    """Re-create a mask image from stored parameters alone (e.g. the DIGIMASK private block).

    ``backend`` overrides the renderer the parameters name (for comparison).
    """
    return render(AvatarParams.from_dict(dict(params)), backend)


class DigitalMask:
    """The :class:`~digimask.pipeline.mask.maskers.PixelMasker` that replaces the face with the avatar."""

    name = "digital_mask"
    cleans_recognizable_features = True

    def __init__(self, refine: int = REFINE_ROUNDS, renderer: str = "moderngl", strict: bool = False,
                 multiple_faces: MultiFacePolicy = "largest", keep_alignment: Alignment = "vertical") -> None:
        """``strict``: refuse a mask whose measurements the analysis cannot confirm within the limits.
        ``multiple_faces``: mask the largest face, or refuse ("reject") a photo showing several.
        ``keep_alignment``: the direction ("vertical", "both" or "none") in which the mask never draws a
        difference between the eyes that the direct fit did not have (see :func:`mask_image`)."""
        if multiple_faces not in get_args(MultiFacePolicy):
            raise ValueError(f"multiple_faces must be one of {get_args(MultiFacePolicy)}, not {multiple_faces!r}")
        if keep_alignment not in get_args(Alignment):
            raise ValueError(f"keep_alignment must be one of {get_args(Alignment)}, not {keep_alignment!r}")
        self.refine = refine
        self.renderer = renderer
        self.strict = strict
        self.keep_alignment = keep_alignment
        self.quality = QualityThresholds(multiple_faces=multiple_faces)

    def mask(self, image: np.ndarray, ds: Dataset) -> MaskResult:
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise MaskingFailed(f"unsupported pixel data {image.shape} {image.dtype} for the digital mask")
        rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
        try:
            result = mask_image(rgb, pixel_spacing_mm=pixel_spacing_mm(ds), options=_options(ds, self.quality), refine=self.refine,
                                backend=self.renderer, keep_alignment=self.keep_alignment)
        except MaskingFailed:
            raise
        except Exception as exc:  # never let an unexpected failure pass the original pixels on
            raise MaskingFailed(f"digital mask failed: {type(exc).__name__}") from exc
        if self.strict and (result.fidelity is None or result.fidelity.score() > 1.0):
            found = result.fidelity.to_dict() if result.fidelity else "unmeasurable"
            raise MaskingFailed(f"mask fidelity not confirmed (limits {ACCEPT_MRD_MM} mm, {ACCEPT_GAZE_DEG} deg): {found}")
        pixels, params = result.pixels, result.params
        if image.ndim == 2 or (rgb[..., :1] == rgb[..., 1:3]).all():  # greyscale stays greyscale
            params = replace(params, greyscale=True)
            pixels = luminance(pixels)
            if image.ndim == 2:
                pixels = pixels[..., 0]
        if image.ndim == 3 and image.shape[2] == 4:
            pixels = np.dstack([pixels, np.full(image.shape[:2], 255, np.uint8)])
        notes = {"mode": params.mode, "refine_iterations": result.iterations,
                 "refinement_change": result.refinement_change(),
                 "fidelity": result.fidelity.to_dict() if result.fidelity else None}
        return MaskResult(pixels, params.to_dict(), notes)


def _options(ds: Dataset, quality: QualityThresholds) -> AnalysisOptions:
    return AnalysisOptions(laterality=laterality(ds), quality=quality)
