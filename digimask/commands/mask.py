"""``digimask mask`` and ``digimask render``: digital masks for images and DICOM files, and re-rendering.

``mask`` writes ``STEM.png`` plus ``STEM.params.json`` (the parameters, re-renderable) for an image, and
``STEM.dcm`` for a DICOM file (de-identified, masked, parameters in the DIGIMASK private block; needs the
node's ``--config`` for the pseudonymisation key). ``--preview`` adds ``STEM.preview.png``: the original
beside the mask, for a human check; it contains the original image, so keep it where the original is.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from digimask.commands.inputs import collect_inputs
from digimask.pipeline.errors import Quarantined
from digimask.pipeline.imaging import IMAGE_SUFFIXES

log = logging.getLogger(__name__)



def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mask",
        help="replace faces in images or DICOM files with the digital mask",
        description="Mask each image or DICOM file (folders: every image and DICOM file inside) and write "
        "one output per accepted input into DIR, named after the input. Exit code 1 if any input was "
        "rejected; each rejection is printed with its reason.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="IMAGE_VIDEO_OR_DICOM")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    p.add_argument("--preview", action="store_true", help="also write STEM.preview.png (original | mask)")
    p.add_argument("--config", type=Path, help="node configuration (TOML); required for DICOM inputs")
    p.add_argument("--renderer", choices=("moderngl", "pyrender"), default="moderngl")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes masking in parallel, each with its own render context (default: the cores)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_mask)

    r = subparsers.add_parser(
        "render",
        help="re-render a digital mask from stored parameters",
        description="Render the mask from a STEM.params.json file or from the DIGIMASK private block of a "
        "masked DICOM file. A clip (multi-frame, video) renders every frame: to OUT.mp4/.mov, or to one "
        "OUT.NNNN.png per frame.",
    )
    r.add_argument("source", type=Path, metavar="PARAMS_JSON_OR_DICOM")
    r.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.png")
    r.add_argument("--renderer", choices=("moderngl", "pyrender"),
                   help="draw with this backend instead of the one stored with the parameters")
    r.set_defaults(func=run_render)


def run_mask(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    inputs = collect_inputs(args.paths, skip_names=(".params.json", ".preview.png"))
    if not inputs:
        log.error("no images or DICOM files found in %s", ", ".join(map(str, args.paths)))
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    job = _Job(args.output, args.preview, args.renderer, args.config, not args.no_progress)
    workers = max(1, min(args.workers, len(inputs)))
    with ExitStack() as stack:
        if workers == 1:
            results = map(job, inputs)
        else:  # spawn: a forked child of a process holding a GL context hangs (Mesa)
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=get_context("spawn")))
            results = pool.map(job, inputs)
        outcomes = list(tqdm(results, total=len(inputs), desc="mask", unit="file",
                             disable=args.no_progress or len(inputs) < 2, file=sys.stderr))
    rejected = [(path, reason) for path, reason in zip(inputs, outcomes) if reason is not None]
    for path, reason in rejected:
        print(f"rejected: {path}: {reason}", file=sys.stderr)
    print(f"{len(inputs) - len(rejected)} masked, {len(rejected)} rejected -> {args.output}")
    return 1 if rejected else 0


_state: dict[tuple, object] = {}  # per process: the masker (it owns a render context) and the DICOM processor


@dataclass(frozen=True)
class _Job:
    """Mask one input into ``out_dir``; returns the rejection reason, or None."""

    out_dir: Path
    preview: bool
    renderer: str
    config: Path | None
    progress: bool = False  # a progress bar per video (frames)

    def __call__(self, path: Path) -> str | None:
        from digimask.pipeline.imaging import VIDEO_SUFFIXES
        from digimask.pipeline.mask.digital_mask import DigitalMask

        if ("masker", self.renderer) not in _state:
            _state["masker", self.renderer] = DigitalMask(renderer=self.renderer)
        masker = _state["masker", self.renderer]
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                _mask_image(path, self.out_dir, masker, self.preview)
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                from digimask.commands.video import mask_video

                mask_video(path, self.out_dir, masker, _video_options(self.config), self.progress)
            else:
                key = ("processor", self.renderer, self.config)
                if key not in _state:
                    _state[key] = _processor(self.config, masker)
                _mask_dicom(path, self.out_dir, _state[key])
        except Quarantined as exc:
            return exc.reason
        return None


def _mask_image(path: Path, out_dir: Path, masker, preview: bool) -> None:
    from PIL import Image
    from pydicom.dataset import Dataset

    from digimask.pipeline.imaging import load

    image = load(path).image
    result = masker.mask(image, Dataset())
    Image.fromarray(result.pixels).save(out_dir / f"{path.stem}.png")
    (out_dir / f"{path.stem}.params.json").write_text(json.dumps(result.params, indent=1, sort_keys=True) + "\n")
    if preview:
        Image.fromarray(np.hstack([image, result.pixels])).save(out_dir / f"{path.stem}.preview.png")


def _processor(config: Path | None, masker):
    if config is None:
        raise Quarantined("DICOM input needs --config (the node's de-identification settings and key)")
    from digimask.config.settings import ConfigError, load
    from digimask.pipeline.process import Processor

    try:
        settings = load(config)
    except ConfigError as exc:
        raise Quarantined(f"invalid configuration: {exc}") from None
    return Processor(settings, masker=masker)


def _video_options(config: Path | None):
    """The configuration's [video] section, or its defaults."""
    from digimask.config.settings import ConfigError, Video, load

    if config is None:
        return Video()
    try:
        return load(config).video
    except ConfigError as exc:
        raise Quarantined(f"invalid configuration: {exc}") from None


def _mask_dicom(path: Path, out_dir: Path, processor) -> None:
    from digimask.pipeline.process import process_file

    ds = process_file(path, processor.settings, processor)
    ds.save_as(out_dir / f"{path.stem}.dcm", enforce_file_format=True)


def run_render(args: argparse.Namespace) -> int:
    from PIL import Image

    from digimask.pipeline.mask.digital_mask import render_params

    try:
        params = _read_params(args.source)
        from digimask.commands.video import read_clip, render_clip

        clip = read_clip(args.source)
        if clip is not None:
            render_clip(params, *clip, args.output, args.renderer)
            return 0
        image = render_params(params, args.renderer)
    except Quarantined as exc:
        print(f"cannot render {args.source}: {exc.reason}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(f"cannot render {args.source}: invalid parameters ({exc})", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(args.output)
    return 0


def _read_params(source: Path) -> dict:
    if not source.is_file():
        raise Quarantined("not found")
    if source.suffix.lower() == ".json":
        try:
            return json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise Quarantined(f"unreadable JSON ({type(exc).__name__})") from None
    import pydicom
    from pydicom.errors import InvalidDicomError

    from digimask.pipeline.dicom import private_block

    try:
        ds = pydicom.dcmread(source, force=True)
    except (InvalidDicomError, OSError) as exc:
        raise Quarantined(f"unreadable DICOM ({type(exc).__name__})") from None
    block = private_block.read(ds)
    if block is None:
        raise Quarantined("no DIGIMASK private block")
    schema, masker, params = block
    if masker != "digital_mask":
        raise Quarantined(f"masked with {masker!r}, not the digital mask: nothing to re-render")
    return params
