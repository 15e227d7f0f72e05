"""Throughput of concurrent worker threads: analyses (and digital masks) per second, 1 thread vs N.

The node's processing workers are threads of one process. Each thread gets its own MediaPipe graphs
(``landmarks._per_thread``); the peer, measured in the same run, is the former design where all threads
share one set of graphs and queue on their locks. Figures are ratios to one thread. Reads
../shared/data (not needed by the tests).

    .venv/bin/python benchmarks/workers.py [FACES_DIR] [--threads N] [--mask]
"""
from __future__ import annotations

import argparse
import functools
import os
import threading
import time
from pathlib import Path

import numpy as np
from digimask.pipeline.eyes import analyse as analyse_module
from digimask.pipeline.eyes import landmarks
from digimask.pipeline.eyes.analyse import analyse
from digimask.pipeline.mask.digital_mask import DigitalMask
from PIL import Image
from pydicom.dataset import Dataset

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
PHOTOS = ("obama.jpg", "grace_hopper.jpg", "biden.jpg", "single_face.jpg", "astronaut.png", "obama3.jpg",
          "takeo.png", "0-f1-su-ph.jpg")


def run(images: list[np.ndarray], threads: int, mask: bool) -> float:
    """Seconds for ``threads`` threads to process ``images`` between them (each thread warmed up first)."""
    ready = threading.Barrier(threads + 1)

    def work(part: list[np.ndarray]) -> None:
        masker = DigitalMask() if mask else None
        (masker.mask(images[0], Dataset()) if masker else analyse(images[0]))  # models and GL context
        ready.wait()
        for image in part:
            masker.mask(image, Dataset()) if masker else analyse(image)
        ready.wait()

    workers = [threading.Thread(target=work, args=(images[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    ready.wait()
    start = time.perf_counter()
    ready.wait()
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    return elapsed


def shared_models() -> None:
    """The peer: one process-wide set of graphs, as before per-thread models."""
    for name in ("facemesh", "iris_model", "face_detector", "near_face_detector"):
        shared = functools.lru_cache(getattr(landmarks, name).__wrapped__)
        setattr(landmarks, name, shared)
        if hasattr(analyse_module, name):
            setattr(analyse_module, name, shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faces", nargs="?", type=Path, default=FACES)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--mask", action="store_true", help="time the whole digital mask, not the analysis")
    args = parser.parse_args()
    images = [np.asarray(Image.open(args.faces / name).convert("RGB")) for name in PHOTOS]
    images = images * (1 if args.mask else 3)
    what = "digital masks" if args.mask else "analyses"
    print(f"{len(images)} {what}, {len(os.sched_getaffinity(0))} cores")
    base = run(images, 1, args.mask)
    per_thread = run(images, args.threads, args.mask)
    shared_models()
    shared = run(images, args.threads, args.mask)
    print(f"1 thread: {len(images) / base:.2f}/s")
    print(f"{args.threads} threads, a graph set per thread: {len(images) / per_thread:.2f}/s ({base / per_thread:.2f}x)")
    print(f"{args.threads} threads, one shared graph set (peer): {len(images) / shared:.2f}/s ({base / shared:.2f}x)")


if __name__ == "__main__":
    main()
