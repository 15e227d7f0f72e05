"""Video files (``.mp4``, ``.mov``) in ``digimask mask`` and clips in ``digimask render``.

``mask CLIP.mp4 -o DIR`` writes ``DIR/CLIP.mp4`` (the masked clip: same frame count and rate, H.264, no
sound and none of the source's metadata: a voice or a recording place identifies) and ``DIR/CLIP.params.json``:
the first frame's parameters plus ``frames``, every frame's numbers (``pipeline/mask/video.py``), from which
``render CLIP.params.json -o OUT.mp4`` re-creates the clip (``OUT.png``: one ``OUT.NNNN.png`` per frame).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from digimask.pipeline.errors import Quarantined
from digimask.pipeline.imaging import VIDEO_SUFFIXES


def mask_video(path: Path, out_dir: Path, masker, options, progress: bool = True) -> Path:
    """Mask one video file into ``out_dir``; a rejection raises :class:`Quarantined` and leaves no output."""
    from pydicom.dataset import Dataset
    from tqdm import tqdm

    from digimask.pipeline.dicom import video
    from digimask.pipeline.mask.video import ClipMasker, columns

    info = video.probe(path)
    clip = ClipMasker(masker, options, float(info.rate), info.frames)
    target = out_dir / f"{path.stem}{path.suffix.lower()}"
    partial = out_dir / f".{path.stem}.partial{path.suffix.lower()}"
    try:
        with tqdm(total=info.frames, desc=path.name, unit="frame", disable=not progress, file=sys.stderr) as bar, \
                video.H264Writer(partial, info.width, info.height, info.rate, crf=options.crf) as writer:
            for pixels in clip.run(video.iter_frames(path), Dataset()):
                writer.write(pixels)
                bar.update()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    params = dict(clip.result.params or {})
    if clip.result.frames is not None:
        frames = clip.result.frames
        params["frames"] = {"schema": frames.schema, "rate_hz": float(info.rate),
                            "columns": columns(params["eyes"]), "status": frames.status.tolist(),
                            "values": [[None if math.isnan(x) else float(x) for x in row] for row in frames.values]}
    (out_dir / f"{path.stem}.params.json").write_text(json.dumps(params, sort_keys=True) + "\n")
    return target


def read_clip(source: Path) -> tuple[Any, float | None] | None:
    """The per-frame array (and frame rate) of a clip's ``params.json`` or masked DICOM file; ``None``
    for a single image's parameters."""
    from digimask.pipeline.dicom.private_block import FrameArray

    if source.suffix.lower() == ".json":
        frames = json.loads(source.read_text()).get("frames")
        if frames is None:
            return None
        values = np.array([[np.nan if x is None else x for x in row] for row in frames["values"]], np.float32)
        return FrameArray(frames["schema"], values, np.asarray(frames["status"], np.uint8)), frames.get("rate_hz")
    import pydicom

    from digimask.pipeline.dicom import private_block
    from digimask.pipeline.dicom.decode import frame_rate

    ds = pydicom.dcmread(source, force=True)
    frames = private_block.read_frames(ds)
    return None if frames is None else (frames, frame_rate(ds))


def render_clip(params: dict, frames, rate_hz: float | None, output: Path, renderer: str | None,
                crf: int | None = None) -> int:
    """Re-render every frame: a video file for a video suffix (needs the rate), else one PNG a frame."""
    from PIL import Image

    from digimask.pipeline.dicom import video
    from digimask.pipeline.mask.digital_mask import render_params
    from digimask.pipeline.mask.video import series_params

    output.parent.mkdir(parents=True, exist_ok=True)
    images = (render_params(p, renderer) for p in series_params(params, frames))
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        n = 0
        for n, image in enumerate(images, 1):
            Image.fromarray(image).save(output.with_name(f"{output.stem}.{n - 1:04d}{output.suffix}"))
        return n
    if not rate_hz:
        raise Quarantined("no frame rate stored: render to PNG frames instead")
    cam = params["camera"]
    with video.H264Writer(output, cam["width"], cam["height"], rate_hz, crf=crf or video.DEFAULT_CRF) as writer:
        for image in images:
            writer.write(image)
    return writer.frames
