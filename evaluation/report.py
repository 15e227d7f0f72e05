"""Write an evaluation as results.json (every number) and report.md with its pictures."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
from digimask.evaluation.attacks import roc_curve
from digimask.evaluation.run import INDEPENDENT, Evaluation, MaskerResult
from digimask.pipeline.eyes.measure import ACCEPT_GAZE_DEG, ACCEPT_MRD_MM
from PIL import Image, ImageDraw

PLOTTED = ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "gaze_h_deg", "gaze_v_deg", "yaw_deg")
TABLED = ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "fissure_width_mm", "gaze_h_deg", "gaze_v_deg",
          "deviation_h_deg", "yaw_deg", "pitch_deg")
THUMB = 160
RANK1_COLUMNS = {
    "mask_to_original": "mask→original",
    "mask_to_original_other_sessions": "mask→original, other sittings",
    "mask_to_mask": "mask→mask",
    "mask_to_mask_other_sessions": "mask→mask, other sittings",
    "periocular_mask_to_original": "periocular→original",
    "periocular_mask_to_original_other_sessions": "periocular→original, other sittings",
    "periocular_mask_to_mask": "periocular mask→mask",
}


def write_report(evaluation: Evaluation, out_dir: Path) -> Path:
    """Write results.json, report.md, summary.md, roc.png, bland_altman_*.png and contact_sheet.png;
    return report.md's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = evaluation.to_dict()
    (out_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    pictures = {"roc": _roc_figure(evaluation, out_dir / "roc.png")}
    pictures["bland_altman"] = [p for r in evaluation.maskers.values() if (p := _bland_altman_figure(r, out_dir))]
    pictures["contact_sheet"] = _contact_sheet(evaluation, out_dir / "contact_sheet.png")
    report = out_dir / "report.md"
    report.write_text(markdown(evaluation, pictures))
    (out_dir / "summary.md").write_text(summary(_jsonable(results)))
    return report


def summary(results: dict) -> str:
    """The headline table (privacy and fidelity, one row per masker) from a results.json dict: the one
    to quote in the README."""
    meta, corpus = results["meta"], results["corpus"]
    lines = [
        f"Public evaluation corpus, {corpus['n_images']} photos of {corpus['n_identities']} identities; "
        f"`digimask evaluate`, {meta['date'][:10]}, commit {meta['commit'] or 'unknown'}. Rank-1 with chance "
        "in brackets; verification at dlib's 0.6 with the false-match rate in brackets; errors are median "
        "absolute differences from the original's measurement; failed = not produced or not measurable.",
        "",
        "| masker | rank-1 mask→original | mask→original, other sittings | mask→mask | mask→mask, other sittings "
        "| periocular→original | verification | AUC | MRD1 mm | MRD2 mm | gaze h° | gaze v° | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, r in results["maskers"].items():
        a = r["attacks"]
        err = [r["measurements"].get(m, {}).get("median_abs_error")
               for m in ("mrd1_mm", "mrd2_mm", "gaze_h_deg", "gaze_v_deg")]
        lines.append(
            f"| {spec} | " + " | ".join(
                f"{_pct(a[name]['rank1'])} ({_pct(a[name]['chance_rank1'])})"
                for name in ("mask_to_original", "mask_to_original_other_sessions", "mask_to_mask",
                             "mask_to_mask_other_sessions", "periocular_mask_to_original"))
            + f" | {_pct(r['verification_rate'])} ({_pct(r['false_match_rate'])}) | {_num(r['auc'])} | "
            + " | ".join(_num(e) for e in err) + f" | {r['n_failed']}/{r['n_images']} |"
        )
    return "\n".join(lines) + "\n"


def markdown(evaluation: Evaluation, pictures: dict) -> str:
    meta, corpus, rec = evaluation.meta, evaluation.corpus, evaluation.recognizer
    lines = [
        "# digimask evaluation",
        "",
        f"Date {meta['date']}, commit {meta['commit'] or 'unknown'}. Corpus: {corpus['n_images']} photos of "
        f"{corpus['n_identities']} identities ({corpus['n_identities_with_2_or_more_images']} with 2 or more "
        f"photos); {corpus['n_skipped']} skipped{_reasons(corpus['skipped'])}. Recognizer: {rec['name']}, "
        f"same person below distance {rec['threshold']}. Method and definitions: docs/evaluation.md.",
        "",
        "## Privacy: re-identification attacks",
        "",
        "Rank-1 identification rate [95% Wilson interval] (chance in brackets). \"Other sittings\": the "
        "gallery holds only photos from other sittings than the probe's (without session labels: other "
        "photos), so the probe's own photo cannot be matched.",
        "",
        "| masker | " + " | ".join(RANK1_COLUMNS.values()) + " |",
        "|---|" + "---|" * len(RANK1_COLUMNS),
    ]
    for spec, r in evaluation.maskers.items():
        lines.append(f"| {spec} | " + " | ".join(_rate(r.attacks[a].result) for a in RANK1_COLUMNS) + " |")
    lines += [
        "",
        "Verification = genuine pairs accepted at the recognizer's threshold (the false-match rate of "
        "impostor pairs, the chance level, in brackets); AUC chance = 0.5; faces found = masked photos in "
        "which the attacker's detector found a face by itself; time = median seconds to mask one photo.",
        "",
        "| masker | verification mask→original | AUC mask→original | verification mask→mask | AUC mask→mask "
        "| faces found | not produced | time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec, r in evaluation.maskers.items():
        m2o, m2m = r.attacks["mask_to_original"].result, r.attacks["mask_to_mask"].result
        lines.append(
            f"| {spec} | {_pct(m2o.verification_rate)} ({_pct(m2o.false_match_rate)}) | {_num(m2o.auc, 3)} "
            f"| {_pct(m2m.verification_rate)} ({_pct(m2m.false_match_rate)}) | {_num(m2m.auc, 3)} "
            f"| {_pct(r.face_detected_rate)} | {r.n_not_produced}/{r.n_images} | {_num(r.median_mask_seconds, 3)} |"
        )
    lines += ["", f"![ROC curves]({pictures['roc']})", "", "## Clinical fidelity", ""]
    if not any(r.fidelity for r in evaluation.maskers.values()):
        lines += [f"Not measured: {meta['fidelity']}.", ""]
    else:
        lines += [
            "Absolute error of the masked image's measurement against the original's: median [95% "
            "bootstrap interval] / 95th percentile (mm for MRD and fissure, degrees for angles); κ = Cohen's "
            "kappa on lid "
            "(ptosis/normal/retraction) and gaze (primary/deviated) categories; failed = could not be "
            "produced or measured.",
            "",
            "| masker | failed | " + " | ".join(TABLED) + " | κ lid | κ gaze |",
            "|---|---|" + "---|" * (len(TABLED) + 2),
        ]
        for spec, r in evaluation.maskers.items():
            f = r.fidelity
            if f is None:
                continue
            cells = [_error(f.measurements[m]) if f.measurements[m].n else "–" for m in TABLED]
            lines.append(f"| {spec} | {f.n_failed}/{f.n_images} | " + " | ".join(cells)
                         + f" | {_num(f.kappa['lid'])} | {_num(f.kappa['gaze'])} |")
        lines += ["", "Bland-Altman bias [95% limits of agreement], masked − original:", "",
                  "| masker | " + " | ".join(PLOTTED) + " |", "|---|" + "---|" * len(PLOTTED)]
        for spec, r in evaluation.maskers.items():
            if r.fidelity is None:
                continue
            cells = []
            for m in PLOTTED:
                ba = r.fidelity.measurements[m].bland_altman
                cells.append(f"{_num(ba.bias)} [{_num(ba.loa_low)}, {_num(ba.loa_high)}]" if ba.n else "–")
            lines.append(f"| {spec} | " + " | ".join(cells) + " |")
        lines += [""] + [f"![Bland-Altman]({p})" for p in pictures["bland_altman"]] + [""]
    lines += [
        "Independent cross-check with landmarks no masker uses (dlib 68 points, on photos where the "
        "attacker's detector found a face): absolute error of each eye's fissure height (mean lid-to-lid "
        "distance, mm at the analysis stage's scale of the original), aspect ratio (that height / eye "
        "width) and canthal-line tilt (degrees), median [95% bootstrap interval] / 95th percentile.",
        "",
        "| masker | compared | fissure height mm | eye aspect ratio | canthal tilt ° |",
        "|---|---|---|---|---|",
    ]
    for spec, r in evaluation.maskers.items():
        ind = r.independent
        cells = [_error(ind.measurements[m], 3 if m == "dlib_eye_aspect" else 2) if ind.measurements[m].n else "–"
                 for m in INDEPENDENT]
        lines.append(f"| {spec} | {ind.n_images - ind.n_failed}/{ind.n_images} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [
        "## Targets",
        "",
        "For a de-identifying masker that keeps the clinical signs: rank-1 at chance for both attacks, "
        f"verification ≤ 1%, median absolute error ≤ {ACCEPT_MRD_MM:g} mm for MRD1/MRD2 and ≤ {ACCEPT_GAZE_DEG:g}° for gaze.",
        "",
    ]
    names = list(next(iter(evaluation.maskers.values())).targets()) if evaluation.maskers else []
    lines += ["| masker | " + " | ".join(n.replace("_", " ") for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for spec, r in evaluation.maskers.items():
        marks = {True: "yes", False: "no", None: "–"}
        lines.append(f"| {spec} | " + " | ".join(marks[v] for v in r.targets().values()) + " |")
    lines += ["", "## Failures", ""]
    for spec, r in evaluation.maskers.items():
        if r.failures:
            lines.append(f"- {spec}: " + "; ".join(f"{n}× {why}" for why, n in sorted(r.failures.items())))
    lines += ["", "## Contact sheet", "", f"![originals and masked images]({pictures['contact_sheet']})", ""]
    return "\n".join(lines)


def _roc_figure(evaluation: Evaluation, path: Path) -> str:
    """ROC curves of the four main attacks, one line style per masker in a shared legend, AUCs listed."""
    plt = _pyplot()
    shown = ("mask_to_original", "mask_to_mask", "periocular_mask_to_original", "periocular_mask_to_mask")
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    styles = [(colour, dash) for dash in ("-", "--", "-.") for colour in plt.get_cmap("tab10").colors]
    for ax, name in zip(axes.flat, shown):
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        for (colour, dash), (spec, r) in zip(styles, evaluation.maskers.items()):
            a = r.attacks[name]
            if len(a.genuine) and len(a.impostor):
                fpr, tpr = roc_curve(a.genuine, a.impostor)
                ax.plot(fpr, tpr, color=colour, ls=dash, lw=1.5, label=spec)
        aucs = ", ".join(f"{_num(r.attacks[name].result.auc)}" for r in evaluation.maskers.values())
        ax.set(title=name.replace("_", " "), xlabel="false match rate", ylabel="true match rate",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.text(0.98, 0.02, f"AUC, legend order: {aucs}", fontsize=6, ha="right", va="bottom",
                transform=ax.transAxes)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 4), 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _bland_altman_figure(result: MaskerResult, out_dir: Path) -> str | None:
    f = result.fidelity
    if f is None:
        return None
    shown = [m for m in PLOTTED if len(f.pairs[m][0]) >= 2]
    if not shown:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2), squeeze=False)
    for ax, m in zip(axes[0], shown):
        ref, test = (np.asarray(v) for v in f.pairs[m])
        ba = f.measurements[m].bland_altman
        ax.scatter((ref + test) / 2, test - ref, s=10)
        for y, style in ((ba.bias, "-"), (ba.loa_low, "--"), (ba.loa_high, "--")):
            ax.axhline(y, color="C3", ls=style, lw=1)
        ax.set(title=m, xlabel="mean of original and masked", ylabel="masked − original")
    fig.suptitle(f"Bland-Altman: {result.spec}")
    fig.tight_layout()
    path = out_dir / f"bland_altman_{_slug(result.spec)}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


def _contact_sheet(evaluation: Evaluation, path: Path) -> str:
    """Rows: one photo per identity; columns: the original, then each masker's output, all cut to the
    region around the face."""
    rows = sorted(evaluation.originals)
    boxes = {s.index: _around(s.face_box, evaluation.originals[s.index].shape)
             for s in evaluation.subjects if s.index in rows}
    columns = ["original photo", *evaluation.maskers]
    label_h = 18
    sheet = Image.new("RGB", (THUMB * len(columns), label_h + THUMB * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((c * THUMB + 3, 3), name[:26], fill="black")
    for r, index in enumerate(rows):
        for c, name in enumerate(columns):
            image = evaluation.originals[index] if c == 0 else evaluation.samples[name].get(index)
            if image is None:
                draw.text((c * THUMB + 10, label_h + r * THUMB + THUMB // 2), "not produced", fill="red")
                continue
            thumb = Image.fromarray(image).crop(boxes[index])
            thumb.thumbnail((THUMB, THUMB))
            sheet.paste(thumb, (c * THUMB + (THUMB - thumb.width) // 2,
                                label_h + r * THUMB + (THUMB - thumb.height) // 2))
    sheet.save(path)
    return path.name


def _around(box: tuple[int, int, int, int], shape: tuple[int, ...], scale: float = 2.0):
    """A square ``scale`` times the face box, clipped to the image."""
    left, top, right, bottom = box
    cx, cy, half = (left + right) / 2, (top + bottom) / 2, scale * max(right - left, bottom - top) / 2
    h, w = shape[:2]
    return (int(max(0, cx - half)), int(max(0, cy - half)), int(min(w, cx + half)), int(min(h, cy + half)))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _jsonable(value):
    """NaN and infinity become null: JSON has neither."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _reasons(counts: dict[str, int]) -> str:
    return " (" + "; ".join(f"{n}× {why}" for why, n in sorted(counts.items())) + ")" if counts else ""


def _error(summary, digits: int = 2) -> str:
    low, high = summary.median_ci95
    return (f"{_num(summary.median_abs_error, digits)} [{_num(low, digits)}–{_num(high, digits)}] "
            f"/ {_num(summary.p95_abs_error, digits)}")


def _rate(result) -> str:
    low, high = result.rank1_ci95
    return f"{_pct(result.rank1)} [{_pct(low)}–{_pct(high)}] ({_pct(result.chance_rank1)})"


def _pct(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _num(x: float, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", spec).strip("_")
