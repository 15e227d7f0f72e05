"""``digimask measure``: ocular measurements from face and external-eye photographs (images or DICOM)."""
from __future__ import annotations

from dataclasses import replace

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from digimask.commands.inputs import collect_inputs

log = logging.getLogger(__name__)

def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "measure",
        help="measure eyelids, iris and gaze in face or eye photographs",
        description="Find the face or eye(s) in each image or DICOM file (folders: every image and "
        "DICOM file inside), measure MRD1/MRD2, fissure height and width, scleral show, gaze, binocular "
        "deviation and head pose in mm/degrees, and print a table. Exit code 1 if any input was rejected.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="IMAGE_OR_DICOM")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write a JSON array, one object per input")
    p.add_argument("--png", type=Path, metavar="DIR", help="write an annotated STEM.png per measured input")
    p.add_argument("--mode", choices=("auto", "face", "closeup"), default="auto")
    p.add_argument("--multiple-faces", choices=("largest", "reject"), default="largest")
    p.add_argument("--geometry", choices=("landmarks", "edges"), default="landmarks",
                   help="eye geometry: the landmark models' (default), or lids and limbus fitted to the "
                   "image's edges (docs/measurements.md)")
    p.add_argument("--fixation-distance-mm", type=float, default=1000.0, metavar="MM",
                   help="camera distance the eyes fixate; the deviation is reported net of that "
                   "convergence (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from digimask.commands.measure_video import is_clip_file, measure_clip_file
    from digimask.pipeline.errors import Quarantined
    from digimask.pipeline.eyes.analyse import AnalysisOptions, analyse
    from digimask.pipeline.eyes.quality import QualityThresholds
    from digimask.pipeline.imaging import load

    inputs = collect_inputs(args.paths)
    if not inputs:
        log.error("no images or DICOM files found in %s", ", ".join(map(str, args.paths)))
        return 2
    if args.png:
        args.png.mkdir(parents=True, exist_ok=True)
    options = AnalysisOptions(mode=args.mode, quality=QualityThresholds(multiple_faces=args.multiple_faces),
                              geometry=args.geometry, fixation_distance_mm=args.fixation_distance_mm)
    records = []
    for path in tqdm(inputs, desc="measure", unit="image", disable=args.no_progress or len(inputs) < 2,
                     file=sys.stderr):
        record: dict = {"path": str(path)}
        if is_clip_file(path):  # videos and multi-frame DICOM: series and events (commands/measure_video.py)
            records.append(measure_clip_file(path, options, progress=not args.no_progress))
            continue
        try:
            loaded = load(path)
            result = analyse(loaded.image, pixel_spacing_mm=loaded.pixel_spacing_mm,
                             options=replace(options, laterality=loaded.laterality))
        except Quarantined as exc:
            record.update(status="rejected", reason=exc.reason, mode=None, eyes={}, head_pose=None)
        else:
            record.update(result.to_dict())
            if args.png:
                annotate(loaded.image, result).save(args.png / f"{path.stem}.png")
        records.append(record)
    print(format_table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 1 if any(r["status"] != "ok" for r in records) else 0


def _pm(e: dict, key: str, digits: int = 1) -> str:
    """A value with its 1-SD uncertainty, e.g. ``3.4±0.3``."""
    sd = e.get(key.replace("_mm", "_sd_mm").replace("_deg", "_sd_deg"))
    return f"{e[key]:.{digits}f}" + ("" if sd is None else f"±{sd:.{digits}f}")


def format_table(records: list[dict]) -> str:
    head = f"{'input':28} {'status':8} {'mode':7} {'eye':5} {'MRD1':>8} {'MRD2':>8} {'ref':6} {'PFH':>8} " \
           f"{'PFW':>5} {'gaze h/v deg':>12} {'yaw/pitch/roll':>15}"
    lines = [head, "-" * len(head)]
    for r in records:
        name = Path(r["path"]).name[-28:]
        if r["status"] != "ok":
            lines.append(f"{name:28} {'rejected':8} {r['reason']}")
            continue
        if r["mode"] == "clip":  # series and events: see the JSON (commands/measure_video.py)
            from digimask.commands.measure_video import summary_line

            lines.append(f"{name:28} {'ok':8} {'clip':7} {summary_line(r)}")
            continue
        pose = r["head_pose"]
        pose_text = "/".join(f"{pose[k]:+.0f}" for k in ("yaw_deg", "pitch_deg", "roll_deg")) if pose else "-"
        for i, (side, e) in enumerate(sorted(r["eyes"].items(), reverse=True)):
            lead = f"{name:28} {'ok':8} {r['mode']:7}" if i == 0 else " " * 45
            lines.append(
                f"{lead} {side:5} {_pm(e, 'mrd1_mm'):>8} {_pm(e, 'mrd2_mm'):>8} {e.get('reference', 'limbus'):6} "
                f"{_pm(e, 'fissure_height_mm'):>8} {e['fissure_width_mm']:5.1f} "
                f"{e['gaze_h_deg']:+5.0f}/{e['gaze_v_deg']:+4.0f}   {pose_text if i == 0 else '':>15}"
            )
        if r.get("binocular"):
            b = r["binocular"]
            sd = f"±{b['horizontal_sd_deg']:.1f}" if b.get("horizontal_sd_deg") is not None else ""
            line = (f"{'':46} deviation h {b['horizontal_deg']:+.1f}{sd} deg ({b['horizontal_pd']:+.0f} PD), "
                    f"v {b['vertical_deg']:+.1f} deg ({b['vertical_pd']:+.0f} PD)")
            if b.get("hirschberg_pd") is not None:
                line += f", Hirschberg {b['hirschberg_pd']:+.0f}±{b['hirschberg_sd_pd']:.0f} PD"
            lines.append(line)
    lines.append("mm ± 1 SD: MRD1/MRD2 margin-reflex distances from the corneal reflex or the limbus centre (ref), "
                 "PFH/PFW palpebral fissure height/width; deviation net of fixating the camera")
    return "\n".join(lines)


def annotate(image: np.ndarray, result, width: int = 900) -> "Image.Image":  # noqa: F821
    """What was measured, for a clinician: the eye region enlarged, with lid margins (upper green, lower
    blue; with fitted geometry the landmark models' seeds thin grey beneath), canthi and iris centres
    (magenta), limbus circles (yellow), corneal reflexes (cyan rings) and MRD lines from the reference
    they were measured from, above the numbers."""
    from PIL import Image, ImageDraw, ImageFont

    from digimask.pipeline.eyes.measure import eye_axes, lid_height

    eyes = result.eyes
    pts = np.vstack([np.vstack([e.upper_lid, e.lower_lid, e.iris_center[None]]) for e in eyes.values()])
    span = max(e.width for e in eyes.values())
    lo = np.maximum(pts.min(axis=0) - (0.6 * span, 1.0 * span), 0)
    hi = np.minimum(pts.max(axis=0) + (0.6 * span, 1.0 * span), (image.shape[1], image.shape[0]))
    zoom = width / (hi[0] - lo[0])
    size = (width, max(1, round((hi[1] - lo[1]) * zoom)))
    crop = Image.fromarray(image).convert("RGB").resize(size, Image.BICUBIC, box=(*lo, *hi))
    font = ImageFont.load_default(size=18)
    lines = _summary_lines(result)
    canvas = Image.new("RGB", (width, size[1] + 24 * len(lines) + 12), (255, 255, 255))
    canvas.paste(crop, (0, 0))
    draw = ImageDraw.Draw(canvas)
    xy = lambda p: tuple((np.asarray(p) - lo) * zoom)  # noqa: E731
    u, v = eye_axes(eyes)
    for side, eye in eyes.items():
        if eye.seed is not None:
            for lid in (eye.seed.upper_lid, eye.seed.lower_lid):
                draw.line([xy(p) for p in lid], fill=(150, 150, 150), width=1)
        draw.line([xy(p) for p in eye.upper_lid], fill=(0, 220, 0), width=2)
        draw.line([xy(p) for p in eye.lower_lid], fill=(0, 160, 255), width=2)
        c, r = eye.iris_center, eye.iris_radius * zoom
        cx, cy = xy(c)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 230, 0), width=2)
        for p in (eye.medial_canthus, eye.lateral_canthus, c):
            x, y = xy(p)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(255, 0, 255))
        if eye.reflex is not None:
            x, y = xy(eye.reflex)
            draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline=(0, 255, 255), width=2)
        ref = c
        if result.measurements.eyes[side].reference == "reflex":
            ref = np.asarray(eye.reflex, float)
        for lid, colour in ((eye.upper_lid, (0, 220, 0)), (eye.lower_lid, (0, 160, 255))):
            h = lid_height(lid, ref, u, v)
            if np.isfinite(h):
                draw.line([xy(ref), xy(ref + h * v)], fill=colour, width=3)
        x, y = xy(eye.lateral_canthus)
        draw.text((x, y - 0.6 * span * zoom), eye.side.upper(), fill=(255, 255, 255), font=font,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((8, size[1] + 6 + 24 * i), line, fill=(0, 0, 0), font=font)
    return canvas


def _summary_lines(result) -> list[str]:
    m = result.measurements
    lines = []
    for side, e in m.eyes.items():
        lines.append(
            f"{side.upper()}: MRD1 {e.mrd1_mm:.1f}±{e.mrd1_sd_mm:.1f}  MRD2 {e.mrd2_mm:.1f}±{e.mrd2_sd_mm:.1f} "
            f"(from {e.reference})  fissure {e.fissure_height_mm:.1f} x "
            f"{e.fissure_width_mm:.1f} mm  scleral show {e.superior_scleral_show_mm:.1f}/"
            f"{e.inferior_scleral_show_mm:.1f} mm  gaze {e.gaze_h_deg:+.0f}/{e.gaze_v_deg:+.0f} deg"
            + ("  CLOSED" if e.closed else "")
        )
    if m.binocular:
        b = m.binocular
        lines.append(f"deviation: horizontal {b.horizontal_deg:+.1f} deg ({b.horizontal_pd:+.0f} PD, + = exo, net of "
                     f"{b.convergence_deg:.1f} deg convergence at {b.fixation_distance_mm:.0f} mm), "
                     f"vertical {b.vertical_deg:+.1f} deg ({b.vertical_pd:+.0f} PD, + = left higher)"
                     + ("" if b.hirschberg_pd is None else f"; Hirschberg {b.hirschberg_pd:+.0f}±{b.hirschberg_sd_pd:.0f} PD"))
    if m.head_pose:
        p = m.head_pose
        lines.append(f"head pose: yaw {p.yaw_deg:+.0f}  pitch {p.pitch_deg:+.0f}  roll {p.roll_deg:+.0f} deg")
    lines.append(f"scale {m.scale.mm_per_px:.3f} mm/px from {m.scale.source} (+/-{100 * m.scale.rel_uncertainty:.0f}%); "
                 f"mode {result.mode}")
    return lines
