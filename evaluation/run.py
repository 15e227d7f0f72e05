"""Run every masker over a corpus: mask, attack, measure; collect the numbers for the report."""
from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from digimask.evaluation import fidelity
from digimask.evaluation.attacks import (
    Attack,
    DlibResNet,
    Embeddings,
    Recognizer,
    attack,
    locate,
)
from digimask.evaluation.baselines import BASELINES
from digimask.evaluation.corpus import Entry, read_image
from digimask.evaluation.landmarks import (
    Face,
    detect_face,
    eye_openings,
    keep_box,
    periocular_box,
)
from digimask.pipeline.errors import MaskingFailed, Quarantined
from digimask.pipeline.eyes.measure import ACCEPT_GAZE_DEG, ACCEPT_MRD_MM
from digimask.pipeline.mask.maskers import MASKERS, PixelMasker, create_masker
from pydicom.dataset import Dataset
from tqdm import tqdm

log = logging.getLogger(__name__)

# An analyser returns ``Measurements.to_dict()`` for an RGB image and raises MaskingFailed when it cannot.
Analyser = Callable[[np.ndarray], Mapping]

DEFAULT_MASKERS = (
    "original",
    "digital_mask",
    "blur:sigma_fraction=0.005",
    "blur:sigma_fraction=0.01",
    "blur:sigma_fraction=0.02",
    "pixelate:blocks=16",
    "pixelate:blocks=32",
    "eye_bar",
    "eye_crop",
    "blank",
)
# The acceptance targets for a de-identifying masker that keeps the clinical signs.
TARGET_MAX_VERIFICATION_RATE = 0.01
TARGET_MAX_ERROR = {"mrd1_mm": ACCEPT_MRD_MM, "mrd2_mm": ACCEPT_MRD_MM, "gaze_h_deg": ACCEPT_GAZE_DEG,
                    "gaze_v_deg": ACCEPT_GAZE_DEG}  # median abs error
INDEPENDENT = ("dlib_fissure_height_mm", "dlib_eye_aspect", "dlib_canthal_tilt_deg")  # landmarks.eye_openings
ATTACKS = {  # name -> (periocular?, attacker masks the gallery too?, gallery from other sittings only?)
    "mask_to_original": (False, False, False),
    "mask_to_original_other_sessions": (False, False, True),
    "mask_to_mask": (False, True, False),
    "mask_to_mask_other_sessions": (False, True, True),
    "periocular_mask_to_original": (True, False, False),
    "periocular_mask_to_original_other_sessions": (True, False, True),
    "periocular_mask_to_mask": (True, True, False),
}


class NoUsablePhotos(ValueError):
    """No photo of the corpus can be attacked or compared."""


def analyse_stage() -> Analyser | None:
    """The pipeline's analysis stage as an analyser, or None where it is not installed."""
    try:
        from digimask.pipeline.eyes.analyse import analyse
    except ImportError:
        return None
    return lambda image: analyse(image).measurements.to_dict()


def available_maskers(specs: Iterable[str] = DEFAULT_MASKERS) -> list[str]:
    """The specs whose masker exists in this installation."""
    return [s for s in specs if _name(s) in BASELINES or _name(s) in MASKERS]


def build_masker(spec: str) -> PixelMasker:
    """``NAME`` or ``NAME:key=value,key=value`` (values parsed as JSON, else kept as text)."""
    name, _, args = spec.partition(":")
    options = {}
    for item in filter(None, args.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"bad masker option {item!r} in {spec!r}; expected key=value")
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    if name in BASELINES:
        return BASELINES[name](**options)
    return create_masker(name, options)


def _name(spec: str) -> str:
    return spec.partition(":")[0]


@dataclass
class Subject:
    """One corpus photo in which the attacker's detector found a face."""

    index: int
    identity: str
    session: str  # unique per photo unless the corpus names its sitting
    face_box: tuple[int, int, int, int]
    box: tuple[int, int, int, int]  # periocular region
    measured: dict[str, float] | None  # None: the analysis stage could not measure the original
    mm_per_px: float | None  # the analysis stage's scale on the original
    dlib_measured: dict[str, float]


@dataclass
class MaskerRun:
    spec: str
    cleans_recognizable_features: bool
    produced: list[bool] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)  # the attacker's detector found a face
    full: list[np.ndarray] = field(default_factory=list)
    periocular: list[np.ndarray] = field(default_factory=list)
    measured: list[dict[str, float] | None] = field(default_factory=list)
    dlib_measured: list[dict[str, float] | None] = field(default_factory=list)  # None: no face detected
    failures: Counter = field(default_factory=Counter)  # reason -> count (never PHI)
    seconds: list[float] = field(default_factory=list)  # time to mask each photo
    samples: dict[int, np.ndarray] = field(default_factory=dict)  # subject index -> masked image


@dataclass
class MaskerResult:
    spec: str
    cleans_recognizable_features: bool
    n_images: int
    n_not_produced: int
    face_detected_rate: float
    median_mask_seconds: float
    attacks: dict[str, Attack]
    fidelity: fidelity.FidelitySummary | None
    independent: fidelity.FidelitySummary  # lid aperture and canthal tilt from dlib's landmarks
    failures: dict[str, int]

    def to_dict(self) -> dict:
        m2o, m2m = self.attacks["mask_to_original"].result, self.attacks["mask_to_mask"].result
        # not produced (any photo), or produced but not measurable where the original was
        n_failed = self.n_not_produced + (self.fidelity.n_not_measured if self.fidelity else 0)
        fid = self.fidelity.to_dict() if self.fidelity else None
        return {
            "rank1_mask_to_original": m2o.rank1,
            "rank1_mask_to_original_other_sessions": self.attacks["mask_to_original_other_sessions"].result.rank1,
            "rank1_mask_to_mask": m2m.rank1,
            "rank1_mask_to_mask_other_sessions": self.attacks["mask_to_mask_other_sessions"].result.rank1,
            "rank1_periocular": self.attacks["periocular_mask_to_original"].result.rank1,
            "rank1_periocular_mask_to_mask": self.attacks["periocular_mask_to_mask"].result.rank1,
            "verification_rate": m2o.verification_rate,
            "false_match_rate": m2o.false_match_rate,
            "auc": m2o.auc,
            "chance_rank1": m2o.chance_rank1,
            "chance_rank1_mask_to_mask": m2m.chance_rank1,
            "chance_rank1_mask_to_mask_other_sessions":
                self.attacks["mask_to_mask_other_sessions"].result.chance_rank1,
            "n_images": self.n_images,
            "n_failed": n_failed,
            "n_not_produced": self.n_not_produced,
            "face_detected_rate": self.face_detected_rate,
            "median_mask_seconds": self.median_mask_seconds,
            "cleans_recognizable_features": self.cleans_recognizable_features,
            "measurements": fid["measurements"] if fid else {},
            "fidelity": fid,
            "independent_check": self.independent.to_dict(),
            "attacks": {name: a.result.to_dict() for name, a in self.attacks.items()},
            "failures": self.failures,
            "targets": self.targets(),
        }

    def targets(self) -> dict[str, bool | None]:
        """Which acceptance targets this masker meets (None: not measured). Rank-1 is "at chance" when it
        is within the upper 95% bound of an attacker who guesses (normal approximation)."""
        out: dict[str, bool | None] = {}
        for name in ("mask_to_original", "mask_to_mask"):
            r = self.attacks[name].result
            out[f"rank1_{name}_at_chance"] = (
                None if not r.n_probes else r.rank1 <= chance_upper_bound(r.chance_rank1, r.n_probes)
            )
        vr = self.attacks["mask_to_original"].result.verification_rate
        out["verification_rate_at_most_1pct"] = (
            None if np.isnan(vr) else bool(vr <= TARGET_MAX_VERIFICATION_RATE))
        for m, limit in TARGET_MAX_ERROR.items():
            s = self.fidelity.measurements[m] if self.fidelity else None
            out[f"{m}_median_error_within_{limit:g}"] = None if not s or not s.n else s.median_abs_error <= limit
        return out


def chance_upper_bound(chance: float, n: int) -> float:
    """Upper end of the 95% range of the rank-1 rate of an attacker who guesses, over ``n`` probes."""
    return chance + 1.96 * float(np.sqrt(chance * (1 - chance) / n))


@dataclass
class Evaluation:
    corpus: dict
    recognizer: dict
    maskers: dict[str, MaskerResult]
    subjects: list[Subject]
    originals: dict[int, np.ndarray]  # contact-sheet rows: subject index -> original
    samples: dict[str, dict[int, np.ndarray]]  # masker -> subject index -> masked image
    meta: dict

    def to_dict(self) -> dict:
        return {
            "meta": self.meta,
            "corpus": self.corpus,
            "recognizer": self.recognizer,
            "thresholds": {
                "ptosis_max_mrd1_mm": fidelity.PTOSIS_MAX_MRD1_MM,
                "retraction_min_mrd1_mm": fidelity.RETRACTION_MIN_MRD1_MM,
                "gaze_deviated_deg": fidelity.GAZE_DEVIATED_DEG,
            },
            "maskers": {spec: r.to_dict() for spec, r in self.maskers.items()},
        }


def evaluate(
    entries: Sequence[Entry],
    masker_specs: Sequence[str],
    *,
    analyser: Analyser | None = None,
    recognizer: Recognizer | None = None,
    max_side: int | None = 1024,
    sheet_rows: int = 6,
    progress: bool = True,
) -> Evaluation:
    """Mask every usable photo with every masker, attack the results and measure them. One photo is in
    memory at a time (plus the contact sheet's)."""
    recognizer = recognizer or DlibResNet()
    maskers = {spec: build_masker(spec) for spec in masker_specs}
    runs = {spec: MaskerRun(spec, bool(getattr(m, "cleans_recognizable_features", False)))
            for spec, m in maskers.items()}
    subjects: list[Subject] = []
    skipped: Counter = Counter()
    gallery_full, gallery_peri = [], []
    originals: dict[int, np.ndarray] = {}
    steps = 1 + len(maskers)
    with tqdm(total=len(entries) * steps, disable=not progress, unit="step") as bar:
        for entry in entries:
            bar.set_description("original")
            loaded = _load(entry, max_side, skipped)
            bar.update(1)
            if loaded is None:
                bar.update(steps - 1)
                continue
            image, face = loaded
            session = f"{entry.identity}/{entry.session}" if entry.session else f"photo {len(subjects)}"
            measured = _measure(analyser, image, Counter()) if analyser else None
            mm_per_px = (measured or {}).get("scale_mm_per_px")
            subject = Subject(
                index=len(subjects),
                identity=entry.identity,
                session=session,
                face_box=face.box,
                box=periocular_box(face.points68, image.shape),
                measured=measured,
                mm_per_px=mm_per_px,
                dlib_measured=eye_openings(face.points68, mm_per_px),
            )
            subjects.append(subject)
            gallery_full.append(recognizer.embed(image, face))
            gallery_peri.append(recognizer.embed(keep_box(image, subject.box), face))
            on_sheet = len(originals) < sheet_rows and all(
                subjects[i].identity != entry.identity for i in originals)
            if on_sheet:
                originals[subject.index] = image
            for spec, masker in maskers.items():
                bar.set_description(spec)
                _mask_one(runs[spec], masker, subject, image, face, recognizer, analyser, keep_sample=on_sheet)
                bar.update(1)

    if not subjects:
        raise NoUsablePhotos(f"none of the {len(entries)} photos has a face the recognizer can find")
    full = _embeddings(subjects, gallery_full, [True] * len(subjects))
    peri = _embeddings(subjects, gallery_peri, [True] * len(subjects))
    identities = Counter(s.identity for s in subjects)
    return Evaluation(
        corpus={
            "n_entries": len(entries),
            "n_images": len(subjects),
            "n_identities": len(identities),
            "n_identities_with_2_or_more_images": sum(n >= 2 for n in identities.values()),
            "n_skipped": sum(skipped.values()),
            "skipped": dict(skipped),
            "n_originals_not_measured": sum(s.measured is None for s in subjects) if analyser else None,
        },
        recognizer={"name": recognizer.name, "threshold": recognizer.threshold},
        maskers={spec: _score(run, subjects, full, peri, recognizer, analyser) for spec, run in runs.items()},
        subjects=subjects,
        originals=originals,
        samples={spec: run.samples for spec, run in runs.items()},
        meta={
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": _commit(),
            "fidelity": "analysis stage" if analyser else "skipped: analysis stage not installed",
        },
    )


def _load(entry: Entry, max_side: int | None, skipped: Counter) -> tuple[np.ndarray, Face] | None:
    try:
        image = read_image(entry.path, max_side)
    except Quarantined:
        skipped["unreadable"] += 1
        return None
    face = detect_face(image)
    if face is None:
        skipped["no face found by the recognizer's detector"] += 1
        return None
    return image, face


def _mask_one(run: MaskerRun, masker, subject: Subject, image: np.ndarray, face: Face, recognizer, analyser,
              keep_sample: bool) -> None:
    start = time.perf_counter()
    masked = _apply(masker, image, run.failures)
    run.seconds.append(time.perf_counter() - start)
    run.produced.append(masked is not None)
    if masked is None:
        run.measured.append(None)
        run.dlib_measured.append(None)
        return
    if keep_sample:
        run.samples[subject.index] = masked
    aligned, detected = locate(masked, face)
    run.detected.append(detected)
    # the masks keep the geometry, so the original's scale converts the mask's pixels too
    run.dlib_measured.append(eye_openings(aligned.points68, subject.mm_per_px) if detected else None)
    run.full.append(recognizer.embed(masked, aligned))
    # the eye region where the attacker finds it (on its own detection, else the original's)
    eye_region = keep_box(masked, periocular_box(aligned.points68, masked.shape))
    run.periocular.append(recognizer.embed(eye_region, aligned))
    # only photos whose original was measured are compared: don't measure the others
    run.measured.append(_measure(analyser, masked, run.failures) if subject.measured is not None else None)


def _apply(masker: PixelMasker, image: np.ndarray, failures: Counter) -> np.ndarray | None:
    try:
        pixels = np.asarray(masker.mask(image, Dataset()).pixels)
    except MaskingFailed as exc:
        failures[f"not produced: {exc.reason}"] += 1
        return None
    except Exception as exc:  # a crashing masker is a result to report, not a reason to stop
        log.warning("masker %s crashed: %s", getattr(masker, "name", "?"), type(exc).__name__)
        failures[f"not produced: {type(exc).__name__}"] += 1
        return None
    if pixels.shape != image.shape or pixels.dtype != np.uint8:
        failures["not produced: changed the image's size or type"] += 1
        return None
    return pixels


def _measure(analyser: Analyser, image: np.ndarray, failures: Counter) -> dict[str, float] | None:
    try:
        return fidelity.flatten(analyser(image))
    except MaskingFailed as exc:
        failures[f"not measured: {exc.reason}"] += 1
    except Exception as exc:
        log.warning("analysis crashed: %s", type(exc).__name__)
        failures[f"not measured: {type(exc).__name__}"] += 1
    return None


def _score(run: MaskerRun, subjects, originals, originals_peri, recognizer, analyser) -> MaskerResult:
    probes = {False: _embeddings(subjects, run.full, run.produced),
              True: _embeddings(subjects, run.periocular, run.produced)}
    galleries = {False: originals, True: originals_peri}
    attacks = {
        name: attack(probes[peri], probes[peri] if masks_gallery else galleries[peri],
                     recognizer.threshold, leave_one_out=masks_gallery, other_sessions=other)
        for name, (peri, masks_gallery, other) in ATTACKS.items()
    }
    fid = None
    if analyser is not None:
        usable = [i for i, s in enumerate(subjects) if s.measured is not None]
        fid = fidelity.compare([subjects[i].measured for i in usable], [run.measured[i] for i in usable],
                               [run.produced[i] for i in usable])
    return MaskerResult(
        spec=run.spec,
        cleans_recognizable_features=run.cleans_recognizable_features,
        n_images=len(subjects),
        n_not_produced=run.produced.count(False),
        face_detected_rate=float(np.mean(run.detected)) if run.detected else float("nan"),
        median_mask_seconds=float(np.median(run.seconds)) if run.seconds else float("nan"),
        attacks=attacks,
        fidelity=fid,
        independent=fidelity.compare([s.dlib_measured for s in subjects], run.dlib_measured, run.produced,
                                     names=INDEPENDENT),
        failures=dict(run.failures),
    )


def _embeddings(subjects: Sequence[Subject], vectors: list[np.ndarray], produced: Sequence[bool]) -> Embeddings:
    kept = [s for s, ok in zip(subjects, produced) if ok]
    return Embeddings(
        vectors=np.asarray(vectors, dtype=float).reshape(len(kept), -1),
        identities=np.array([s.identity for s in kept]),
        images=np.array([s.index for s in kept], dtype=int),
        sessions=np.array([s.session for s in kept]),
    )


def _commit() -> str | None:
    """The source's git commit, "+dirty" when tracked files differ from it; None outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (commit + ("+dirty" if dirty else "")) or None
