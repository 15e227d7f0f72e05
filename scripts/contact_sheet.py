"""A contact sheet for humans: each original beside its digital mask, with the drawn-geometry check.

    .venv/bin/python scripts/contact_sheet.py OUT.png [IMAGE_OR_DIR ...] [--eyes]

Defaults to ../shared/data/faces. Rejected inputs get a grey tile with the reason. ``--eyes`` shows the
band around both eyes, enlarged, so a reviewer can judge whether the mask draws the lids and gaze as the
patient's look. The sheet shows the originals, so it is a development artefact: never commit it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.mask.digital_mask import mask_image
from PIL import Image, ImageDraw

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
SUFFIXES = {".png", ".jpg", ".jpeg"}
TILE = 256


def tile(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    img = Image.fromarray(image)
    if box is not None:
        img = img.crop(box).resize((TILE, TILE * (box[3] - box[1]) // max(1, box[2] - box[0])), Image.BICUBIC)
    img.thumbnail((TILE, TILE))
    out = Image.new("RGB", (TILE, TILE), (40, 40, 40))
    out.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    return out


def eye_band(eyes: dict) -> tuple[int, int, int, int]:
    """A box around all measured eyes: 1.5 times their span wide, half as high."""
    corners = np.array([c for e in eyes.values() for c in (e.medial_canthus, e.lateral_canthus)])
    centre, span = corners.mean(axis=0), max(np.ptp(corners[:, 0]), 1.0)
    half = 0.75 * span
    return (int(centre[0] - half), int(centre[1] - half / 2), int(centre[0] + half), int(centre[1] + half / 2))


def main(out: Path, sources: list[Path], eyes: bool) -> None:
    paths = sorted(p for s in sources for p in ([s] if s.is_file() else s.iterdir()) if p.suffix.lower() in SUFFIXES)
    n = 2
    rows = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        box = None
        try:
            result = mask_image(image)
            box = eye_band(result.analysis.eyes) if eyes else None
            masks = [tile(result.pixels, box)]
            label = f"{result.params.mode}; drawn vs measured {result.check.to_dict()}"
        except MaskingFailed as exc:
            masks, label = [Image.new("RGB", (TILE, TILE), (90, 90, 90))] * (n - 1), f"rejected: {exc.reason}"
        row = Image.new("RGB", (n * TILE, TILE + 18), (255, 255, 255))
        for i, t in enumerate([tile(image, box), *masks]):
            row.paste(t, (i * TILE, 0))
        ImageDraw.Draw(row).text((4, TILE + 3), f"{path.name}: {label}"[:40 * n], fill=(0, 0, 0))
        rows.append(row)
        print(f"{path.name}: {label}")
    cols = 3
    sheet = Image.new("RGB", (cols * n * TILE, -(-len(rows) // cols) * (TILE + 18)), (255, 255, 255))
    for i, row in enumerate(rows):
        sheet.paste(row, ((i % cols) * n * TILE, (i // cols) * (TILE + 18)))
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", nargs="*", type=Path)
    parser.add_argument("--eyes", action="store_true", help="the band around the eyes only, enlarged")
    args = parser.parse_args()
    main(args.out, args.sources or [FACES], args.eyes)
