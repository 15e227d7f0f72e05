#!/usr/bin/env python3
"""End-to-end rate of the node with the digital mask against the blank masker, same images, same run.

DCMTK storescu -> digimask node -> Orthanc, on 127.0.0.1; the clock runs from the first C-STORE until
every instance is confirmed by Orthanc. The images are the package test photos (skimage astronaut,
matplotlib grace_hopper) and mirrored copies, as Ophthalmic Photography 8 Bit. Target: the digital mask
at least 0.25x the blank masker's rate.

    .venv/bin/python benchmarks/node_mask.py [N] [--workers W]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import dicom_factory as f  # noqa: E402
from peers import NodeProcess, Orthanc, free_port, node_config, storescu, wait_for  # noqa: E402


def photos(n: int) -> list[np.ndarray]:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = np.asarray(Image.open(fh).convert("RGB"))
    base = [data.astronaut(), hopper]
    base += [np.ascontiguousarray(p[:, ::-1]) for p in base]
    return [base[i % len(base)] for i in range(n)]


def run(masker: str, warm: Path, files: list[Path], root: Path, workers: int) -> float:
    """Seconds from the first C-STORE until Orthanc holds every masked instance, after one warm-up instance
    (models, render contexts: a node's start-up, not its rate)."""
    orthanc = Orthanc(root / f"orthanc-{masker}").start()
    port = free_port()
    config = node_config(root / f"node-{masker}", port, {"ORTHANC": orthanc.dicom_port}, masker=masker)
    config.write_text(config.read_text().replace("[pipeline]\n", f"[pipeline]\nworkers = {workers}\n"))
    node = NodeProcess(config, port).start()
    try:
        for batch in ([warm], files):
            done = len(orthanc.instances()) + len(batch)
            start = time.perf_counter()
            result = storescu(port, batch)
            if result.returncode != 0:
                sys.exit(f"storescu failed: {result.stderr[-400:]}")
            wait_for(lambda: len(orthanc.instances()) >= done, 1800, f"{masker}: all in Orthanc", interval=0.1)
        return time.perf_counter() - start
    finally:
        node.kill(signal.SIGTERM)
        orthanc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=12)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = photos(args.n + 1)
        files = [f.save(f.op8(f"bench-{i}", rgb, i), root / f"{i}.dcm") for i, rgb in enumerate(images)]
        warm, files = files[0], files[1:]
        t_blank = run("blank", warm, files, root, args.workers)
        t_mask = run("digital_mask", warm, files, root, args.workers)
    n = len(files)
    print(f"{n} photos (512x512 and 512x600 RGB) through the node, {args.workers} worker(s), {os.cpu_count()} CPU(s), "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"  blank masker  : {n / t_blank:6.2f} images/s")
    print(f"  digital mask  : {n / t_mask:6.2f} images/s   ratio {t_blank / t_mask:.2f}x the blank masker (target >= 0.25x)")


if __name__ == "__main__":
    main()
