#!/usr/bin/env python3
"""Video masking: per-frame cost against one photo of the same size, and peak memory against clip length.

1. **Cost.** The astronaut photo (skimage) scaled to SIZE px, jittered by 1 px as a clip of N frames at 30 fps,
   masked by the clip masker (the digital mask's fit per frame with the face tracked, smoothing, one render
   of the smoothed avatar) against ``DigitalMask.mask`` on the same photo. Each of ROUNDS rounds times PHOTOS
   photos, the clip, then PHOTOS photos again, and compares the clip's cost a frame with the mean of the photos
   around it (wall and this process's CPU time), so that load from other processes falls on both; the rounds'
   median and range are reported. Target (issue 15): <= 0.7x. Measured here (2 shared cores, load 1.9-5,
   2026-12-03, seven runs): 0.61-0.69x wall, 0.67-0.71x CPU (rounds' medians): met by less than the noise. The
   eye model's 24 crops (~34 ms CPU a frame) and llvmpipe (~13 ms) are the same in both; a photo adds its
   single fit (~32 ms) and the face detectors (~5 ms). README, benchmarks, has the breakdown.
2. **Memory.** A Video Photographic instance (H.264) of a short and a 5x longer clip through ``Processor``
   (decode -> mask -> encode as a stream), each in a fresh process, peak RSS compared. So that this runs in
   minutes on a CPU, the masker there replays the digital mask's parameters of the first frames (every frame
   still goes through the clip masker, the smoothing, the render and the encoder); the per-frame analysis
   and fit hold nothing across frames. Target: within 10 %.

    .venv/bin/python benchmarks/video.py [--frames N] [--size SIZE] [--rounds ROUNDS] [--photos PHOTOS]
                                         [--seconds S1 S2] [--cost-only]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import video_factory as vf


def cost(n: int, size: int, rounds: int, k: int) -> None:
    from digimask.config.settings import Video
    from digimask.pipeline.mask.digital_mask import DigitalMask
    from digimask.pipeline.mask.video import ClipMasker
    from pydicom.dataset import Dataset

    photo = vf.small(data.astronaut(), size)
    frames = vf.jittered(photo, n, px=1)
    masker = DigitalMask()
    masker.mask(photo, Dataset())  # models and render context: start-up, not rate

    def timed(run, per: int) -> tuple[float, float]:
        """(wall, this process's CPU) seconds per item."""
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return (time.perf_counter() - wall) / per, (time.process_time() - cpu) / per

    def photos() -> None:
        for _ in range(k):
            masker.mask(photo, Dataset())

    samples = []  # per round: photos before, clip a frame, photos after; each (wall, CPU)
    for _ in range(rounds):
        before = timed(photos, k)
        clip = ClipMasker(masker, Video(), 30.0, n)
        per_frame = timed(lambda: sum(1 for _ in clip.run(frames, Dataset())), n)
        samples.append((before, per_frame, timed(photos, k)))
    t = np.array(samples)  # (rounds, 3, 2)
    ratio = t[:, 1] / t[:, [0, 2]].mean(axis=1)  # (rounds, wall/CPU)
    one, per = 1000 * np.median(t[:, [0, 2]].reshape(-1, 2), axis=0), 1000 * np.median(t[:, 1], axis=0)
    span = lambda r: f"{np.median(r):.2f}x ({r.min():.2f}-{r.max():.2f})"  # noqa: E731
    print(f"cost at {size}x{size}: one photo {one[0]:.0f} ms (CPU {one[1]:.0f}), clip {per[0]:.0f} ms a frame "
          f"(CPU {per[1]:.0f}) over {n} frames; clip / photos around it, median (range) of {rounds} rounds: "
          f"wall {span(ratio[:, 0])}, CPU {span(ratio[:, 1])} (target <= 0.7x); {clip.result.notes}")


class Replay:
    """The digital mask's results for a few frames, replayed in turn (see the module docstring)."""

    name, cleans_recognizable_features = "digital_mask", True

    def __init__(self, results: list) -> None:
        self.results, self.i = results, 0

    def mask(self, image, ds):  # type: ignore[no-untyped-def]
        self.i += 1
        return self.results[(self.i - 1) % len(self.results)]


def memory_child(seconds: float, size: int) -> None:
    """One process: build the clip's instance, mask it through Processor, print peak RSS."""
    from digimask.config.settings import parse
    from digimask.pipeline.mask.digital_mask import DigitalMask
    from digimask.pipeline.process import Processor
    from pydicom.dataset import Dataset

    photo = vf.small(data.astronaut(), size)
    seeds = vf.jittered(photo, 4, px=1)
    masker = DigitalMask()
    replay = Replay([masker.mask(frame, Dataset()) for frame in seeds])
    n = int(round(30 * seconds))
    stream = vf.encode_stream([seeds[i % 4] for i in range(n)], 30)
    ds = vf.video_photographic("bench", seeds[:1], data=stream)
    ds.NumberOfFrames, ds.StopTrim = n, n
    settings = parse({"node": {"allowed_calling_aes": ["SCU"]}, "deid": {"secret": "k"}})
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = Processor(settings, masker=replay).process(ds, route=False).dataset
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{n} {elapsed:.1f} {base} {peak} {int(out.NumberOfFrames)}")


def memory(seconds: list[float], size: int) -> None:
    rows = []
    for s in seconds:
        r = subprocess.run([sys.executable, __file__, "--child", str(s), "--size", str(size)],
                           capture_output=True, text=True, check=True)
        n, elapsed, base, peak, out = r.stdout.split()[-5:]
        rows.append((int(n), float(elapsed), int(base) / 1024, int(peak) / 1024, int(out)))
        print(f"memory: {n} frames ({s:g} s) at {size}x{size} in {float(elapsed):.0f} s ({float(elapsed) / int(n) * 1000:.0f} ms a frame): "
              f"peak RSS {int(peak) / 1024:.0f} MiB (before masking {int(base) / 1024:.0f} MiB), {out} frames out")
    (_, _, _, short, _), (_, _, _, long, _) = rows[0], rows[-1]
    print(f"memory: longest / shortest clip peak RSS {long / short:.3f} (target within 10 %)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--photos", type=int, default=4, help="photos timed before and after each clip")
    p.add_argument("--cost-only", action="store_true", help="skip the memory runs (minutes)")
    p.add_argument("--seconds", type=float, nargs=2, default=[60.0, 300.0])
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        memory_child(args.child, args.size)
        return
    cost(args.frames, args.size, args.rounds, args.photos)
    if not args.cost_only:
        memory(args.seconds, args.size)


if __name__ == "__main__":
    main()
