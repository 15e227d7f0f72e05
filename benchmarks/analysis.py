#!/usr/bin/env python3
"""Per-image time of the analysis stage, by path, on one CPU core, against dlib in the same run.

For every photo in FACES (default ../shared/data/faces): the whole ``analyse`` call (face or close-up
path, quality gates and measurements included) and its parts (FaceMesh, full-range face detector, eye
model on aligned crops), beside dlib's HOG detector + 68-point landmarks on the same image (the peer).
Prints medians of REPEATS runs after a warm-up, and the ratio ours / dlib. Target: < 50 ms per full-face
image. The edge fit (``edges.fit_eyes``, analyse's "edges" geometry) is timed on the same eyes, as a
ratio to the landmark analysis in the same run (issue 12: at most 0.3).
Usage: .venv/bin/python benchmarks/analysis.py [FACES_DIR] [REPEATS]
"""
from __future__ import annotations

import os

os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, before any thread pool starts

import sys  # noqa: E402
import time  # noqa: E402
from importlib.util import find_spec  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from digimask.pipeline.errors import Rejected
from digimask.pipeline.eyes.analyse import analyse, refine_eyes  # noqa: E402
from digimask.pipeline.eyes.edges import fit_eyes  # noqa: E402
from digimask.pipeline.eyes.landmarks import detect_face_boxes, facemesh  # noqa: E402
from PIL import Image  # noqa: E402

FACES = Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else Path(__file__).resolve().parents[2] / "shared/data/faces"
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 7


def median_ms(fn, repeats: int = REPEATS) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def dlib_peer():
    import dlib

    models = Path(find_spec("face_recognition_models").origin).parent / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    return lambda image: [predictor(image, box) for box in detector(image, 0)]


def main() -> None:
    peer = dlib_peer()
    print(f"one core, median of {REPEATS} runs, ms per image")
    print(f"{'image':28} {'size':>9} {'path':8} {'analyse':>8} {'facemesh':>9} {'detector':>9} {'eye model':>9} "
          f"{'dlib':>6} {'ratio':>6} {'edge fit':>8} {'fit/analyse':>11}")
    totals: dict[str, list[float]] = {}
    ratios, fit_ratios = [], []
    for path in sorted(p for p in FACES.iterdir() if p.suffix.lower() in {".jpg", ".png"}):
        image = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        try:
            result = analyse(image)
            mode = result.mode
        except Rejected:
            result, mode = None, "rejected"
        total = median_ms(lambda: _try(image))
        parts = ["", "", ""]
        if mode == "face":
            parts = [f"{median_ms(lambda: facemesh().detect(image)):9.1f}",
                     f"{median_ms(lambda: detect_face_boxes(image)):9.1f}",
                     f"{median_ms(lambda: refine_eyes(image, result.eyes)):9.1f}"]
        dlib_ms = median_ms(lambda: peer(image))
        fit_text = ["", ""]
        if result is not None:
            seeds = {side: eye.seed or eye for side, eye in result.eyes.items()}
            fit_ms = median_ms(lambda: fit_eyes(image, seeds))
            fit_ratios.append(fit_ms / total)
            fit_text = [f"{fit_ms:8.1f}", f"{fit_ms / total:11.2f}"]
        totals.setdefault(mode, []).append(total)
        if mode == "face":
            ratios.append(total / dlib_ms)
        h, w = image.shape[:2]
        print(f"{path.name[:28]:28} {f'{w}x{h}':>9} {mode:8} {total:8.1f} {parts[0]:>9} {parts[1]:>9} {parts[2]:>9} "
              f"{dlib_ms:6.1f} {total / dlib_ms:6.2f} {fit_text[0]:>8} {fit_text[1]:>11}")
    for mode, values in sorted(totals.items()):
        print(f"median {mode}: {np.median(values):.1f} ms over {len(values)} images")
    if ratios:
        print(f"face path vs dlib HOG+68 on the same images: median ratio {np.median(ratios):.2f}")
    if fit_ratios:
        print(f"edge fit / landmark analysis, same images: median {np.median(fit_ratios):.2f}, "
              f"max {np.max(fit_ratios):.2f} (target <= 0.30)")


def _try(image: np.ndarray) -> None:
    try:
        analyse(image)
    except Rejected:
        pass


if __name__ == "__main__":
    main()
