"""A contact sheet for humans: each original beside its digital mask, with the fidelity figures.

    .venv/bin/python scripts/contact_sheet.py OUT.png [IMAGE_OR_DIR ...]

Defaults to ../shared/data/faces. Rejected inputs get a grey tile with the reason. The sheet shows the
originals, so it is a development artefact: never commit it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digimask.pipeline.digital_mask import mask_image
from digimask.pipeline.pixels import MaskingFailed

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
SUFFIXES = {".png", ".jpg", ".jpeg"}
TILE = 256


def tile(image: np.ndarray) -> Image.Image:
    img = Image.fromarray(image)
    img.thumbnail((TILE, TILE))
    out = Image.new("RGB", (TILE, TILE), (40, 40, 40))
    out.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    return out


def main(out: Path, sources: list[Path]) -> None:
    paths = sorted(p for s in sources for p in ([s] if s.is_file() else s.iterdir()) if p.suffix.lower() in SUFFIXES)
    rows = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        try:
            result = mask_image(image)
            found = result.fidelity.to_dict() if result.fidelity else "unmeasured"
            masked, label = tile(result.pixels), f"{result.params.mode}; fidelity {found}"
        except MaskingFailed as exc:
            masked, label = Image.new("RGB", (TILE, TILE), (90, 90, 90)), f"rejected: {exc.reason}"
        row = Image.new("RGB", (2 * TILE, TILE + 18), (255, 255, 255))
        row.paste(tile(image), (0, 0))
        row.paste(masked, (TILE, 0))
        ImageDraw.Draw(row).text((4, TILE + 3), f"{path.name}: {label}"[:80], fill=(0, 0, 0))
        rows.append(row)
        print(f"{path.name}: {label}")
    cols = 3
    sheet = Image.new("RGB", (cols * 2 * TILE, -(-len(rows) // cols) * (TILE + 18)), (255, 255, 255))
    for i, row in enumerate(rows):
        sheet.paste(row, ((i % cols) * 2 * TILE, (i // cols) * (TILE + 18)))
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]] or [FACES])
