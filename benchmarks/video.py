#!/usr/bin/env python3
"""Video masking: per-frame cost against one photo of the same size, and peak memory against clip length.

1. **Cost.** The astronaut photo (skimage) scaled to SIZE px, jittered by 1 px as a clip of N frames at 30 fps,
   masked by the clip masker (the digital mask's fit per frame with the face tracked, smoothing, one render
   of the smoothed avatar) against ``DigitalMask.mask`` on the same photo. Photo and clip alternate for
   ROUNDS rounds (a photo before and after each clip), and the medians are compared, so that load from
   other processes falls on both. Target (issue 15): <= 0.7x.
2. **Memory.** A Video Photographic instance (H.264) of a short and a 5x longer clip through ``Processor``
   (decode -> mask -> encode as a stream), each in a fresh process, peak RSS compared. So that this runs in
   minutes on a CPU, the masker there replays the digital mask's parameters of the first frames (every frame
   still goes through the clip masker, the smoothing, the render and the encoder); the per-frame analysis
   and fit hold nothing across frames. Target: within 10 %.

    .venv/bin/python benchmarks/video.py [--frames N] [--size SIZE] [--rounds ROUNDS] [--seconds S1 S2] [--cost-only]
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


def cost(n: int, size: int, rounds: int) -> None:
    from digimask.config.settings import Video
    from digimask.pipeline.mask.digital_mask import DigitalMask
    from digimask.pipeline.mask.video import ClipMasker
    from pydicom.dataset import Dataset

    photo = vf.small(data.astronaut(), size)
    frames = vf.jittered(photo, n, px=1)
    masker = DigitalMask()
    masker.mask(photo, Dataset())  # models and render context: start-up, not rate
    photos, clips = [], []  # (wall, this process's CPU) seconds

    def timed(run, per: int = 1) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return (time.perf_counter() - wall) / per, (time.process_time() - cpu) / per

    for _ in range(rounds):
        photos.append(timed(lambda: masker.mask(photo, Dataset())))
        clip = ClipMasker(masker, Video(), 30.0, n)
        clips.append(timed(lambda: sum(1 for _ in clip.run(frames, Dataset())), n))
        photos.append(timed(lambda: masker.mask(photo, Dataset())))
    one, per_frame = np.median(photos, axis=0), np.median(clips, axis=0)
    print(f"cost at {size}x{size}: one photo {1000 * one[0]:.0f} ms, clip {1000 * per_frame[0]:.0f} ms a frame "
          f"over {n} frames (medians of {rounds} rounds) -> {per_frame[0] / one[0]:.2f}x (target <= 0.7x); "
          f"CPU time {1000 * one[1]:.0f} and {1000 * per_frame[1]:.0f} ms -> {per_frame[1] / one[1]:.2f}x; "
          f"{clip.result.notes}")


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
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cost-only", action="store_true", help="skip the memory runs (minutes)")
    p.add_argument("--seconds", type=float, nargs=2, default=[60.0, 300.0])
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        memory_child(args.child, args.size)
        return
    cost(args.frames, args.size, args.rounds)
    if not args.cost_only:
        memory(args.seconds, args.size)


if __name__ == "__main__":
    main()
