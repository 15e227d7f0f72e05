"""Clinical fidelity: do the analysis stage's ocular measurements survive masking?

For each image, the measurements on the masked image are compared with those on the original: absolute
error (median, 95th percentile), Bland-Altman agreement, and Cohen's kappa on clinical categories.
Thresholds and their sources are in docs/evaluation.md.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from digimask.pipeline.eyes.landmarks import SIDES

EYE_MEASUREMENTS = ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "fissure_width_mm", "gaze_h_deg", "gaze_v_deg")
BINOCULAR = {"horizontal_deg": "deviation_h_deg", "vertical_deg": "deviation_v_deg"}
HEAD_POSE = ("yaw_deg", "pitch_deg", "roll_deg")
MEASUREMENTS = (*EYE_MEASUREMENTS, *BINOCULAR.values(), *HEAD_POSE)

# Upper lid position by MRD1 (mm). Ptosis: MRD1 <= 2.0 mm, the functional-ptosis criterion of the AAO
# report (Cahill et al., Ophthalmology 2011;118:2510-7). Retraction: lid margin at or above the superior
# limbus (Bartley & Gorman, Am J Ophthalmol 1995;119:792-5), i.e. MRD1 > 5.5 mm for a ~11 mm cornea.
PTOSIS_MAX_MRD1_MM = 2.0
RETRACTION_MIN_MRD1_MM = 5.5
# Gaze: "deviated" when either eye-in-head angle exceeds 10 degrees (project threshold, see docs).
GAZE_DEVIATED_DEG = 10.0

Flat = Mapping[str, float]  # "right.mrd1_mm", "left.gaze_h_deg", "deviation_h_deg", "yaw_deg", ...


def flatten(measurements: Mapping) -> dict[str, float]:
    """The compared values of a ``Measurements.to_dict()``, under flat keys; missing or non-finite
    values are left out."""
    out: dict[str, float] = {}
    for side, eye in (measurements.get("eyes") or {}).items():
        for key in EYE_MEASUREMENTS:
            out[f"{side}.{key}"] = eye.get(key)
    for key, name in BINOCULAR.items():
        out[name] = (measurements.get("binocular") or {}).get(key)
    for key in HEAD_POSE:
        out[key] = (measurements.get("head_pose") or {}).get(key)
    out["scale_mm_per_px"] = (measurements.get("scale") or {}).get("mm_per_px")  # not compared
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def lid_category(mrd1_mm: float) -> str:
    if mrd1_mm <= PTOSIS_MAX_MRD1_MM:
        return "ptosis"
    return "retraction" if mrd1_mm > RETRACTION_MIN_MRD1_MM else "normal"


def gaze_category(h_deg: float, v_deg: float) -> str:
    return "deviated" if max(abs(h_deg), abs(v_deg)) > GAZE_DEVIATED_DEG else "primary"


@dataclass(frozen=True)
class BlandAltman:
    """Agreement of test with reference (Bland & Altman, Lancet 1986;i:307-10): bias = mean difference
    (test - reference), limits of agreement = bias +/- 1.96 SD of the differences."""

    n: int
    bias: float
    sd: float
    loa_low: float
    loa_high: float


def bland_altman(reference: Sequence[float], test: Sequence[float]) -> BlandAltman:
    diff = np.asarray(test, dtype=float) - np.asarray(reference, dtype=float)
    if diff.size == 0:
        nan = float("nan")
        return BlandAltman(0, nan, nan, nan, nan)
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    return BlandAltman(int(diff.size), bias, sd, bias - 1.96 * sd, bias + 1.96 * sd)


def cohens_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa (Educ Psychol Meas 1960;20:37-46): (p_o - p_e) / (1 - p_e). NaN when undefined
    (no pairs, or chance agreement is already 1 because both raters used one and the same category)."""
    if len(a) != len(b):
        raise ValueError("rating lists differ in length")
    if not a:
        return float("nan")
    labels = sorted(set(a) | set(b))
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    p_o = float((a_arr == b_arr).mean())
    p_e = float(sum((a_arr == c).mean() * (b_arr == c).mean() for c in labels))
    return float("nan") if p_e == 1.0 else (p_o - p_e) / (1.0 - p_e)


@dataclass(frozen=True)
class ErrorSummary:
    n: int
    median_abs_error: float
    median_ci95: tuple[float, float]  # percentile bootstrap
    p95_abs_error: float
    bland_altman: BlandAltman


def bootstrap_median_ci(values: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median (Efron & Tibshirani 1993); fixed seed, so a
    report is reproducible."""
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(n_resamples, values.size), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return (float(low), float(high))


@dataclass(frozen=True)
class FidelitySummary:
    n_images: int  # images whose original was measured: the ones compared
    n_not_produced: int  # the masker raised MaskingFailed
    n_not_measured: int  # the masked image could not be measured
    measurements: dict[str, ErrorSummary]
    kappa: dict[str, float]  # category -> Cohen's kappa
    category_agreement: dict[str, float]  # category -> observed agreement
    pairs: dict[str, tuple[list[float], list[float]]]  # measurement -> (reference, masked), for plots

    @property
    def n_failed(self) -> int:
        return self.n_not_produced + self.n_not_measured

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["pairs"]
        d["n_failed"] = self.n_failed
        return d


def compare(
    reference: Sequence[Flat],
    masked: Sequence[Flat | None],
    produced: Sequence[bool],
    names: Sequence[str] = MEASUREMENTS,
) -> FidelitySummary:
    """Compare measurements on masked images with their originals'. ``masked[i]`` is None where the
    masker could not produce the image (``produced[i]`` False) or the masked image could not be
    measured. ``names`` are the measurements compared (per-eye ones pooled over both eyes); the
    clinical categories are rated when their measurements are among them."""
    if not len(reference) == len(masked) == len(produced):
        raise ValueError("reference, masked and produced differ in length")
    pairs: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in names}
    lids: tuple[list[str], list[str]] = ([], [])
    gaze: tuple[list[str], list[str]] = ([], [])
    for ref, test in zip(reference, masked):
        if test is None:
            continue
        for key, value in ref.items():
            name = key.rpartition(".")[2]
            if key in test and name in pairs:
                pairs[name][0].append(value)
                pairs[name][1].append(test[key])
        for side in SIDES:
            if f"{side}.mrd1_mm" in ref and f"{side}.mrd1_mm" in test:
                lids[0].append(lid_category(ref[f"{side}.mrd1_mm"]))
                lids[1].append(lid_category(test[f"{side}.mrd1_mm"]))
            gaze_keys = (f"{side}.gaze_h_deg", f"{side}.gaze_v_deg")
            if all(k in ref and k in test for k in gaze_keys):
                gaze[0].append(gaze_category(*(ref[k] for k in gaze_keys)))
                gaze[1].append(gaze_category(*(test[k] for k in gaze_keys)))
    summaries = {}
    for name, (ref_values, test_values) in pairs.items():
        err = np.abs(np.subtract(test_values, ref_values))
        summaries[name] = ErrorSummary(
            n=int(err.size),
            median_abs_error=float(np.median(err)) if err.size else float("nan"),
            median_ci95=bootstrap_median_ci(err),
            p95_abs_error=float(np.percentile(err, 95)) if err.size else float("nan"),
            bland_altman=bland_altman(ref_values, test_values),
        )
    categories = {
        category: ratings
        for category, ratings, needs in (("lid", lids, "mrd1_mm"), ("gaze", gaze, "gaze_h_deg"))
        if needs in names
    }
    return FidelitySummary(
        n_images=len(reference),
        n_not_produced=sum(not p for p in produced),
        n_not_measured=sum(test is None and p for test, p in zip(masked, produced)),
        measurements=summaries,
        kappa={name: cohens_kappa(*ab) for name, ab in categories.items()},
        category_agreement={
            name: float(np.mean(np.asarray(a) == np.asarray(b))) if a else float("nan")
            for name, (a, b) in categories.items()
        },
        pairs=pairs,
    )
