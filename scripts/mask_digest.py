"""Print a digest of every mask the CLI makes of the package test photos, to compare two commits bit for bit.

    python scripts/mask_digest.py > before.txt; (change the code); python scripts/mask_digest.py | diff before.txt -

Runs ``digimask mask`` (photos: PNG and parameters) and ``digimask measure --json`` on scikit-image's
astronaut and matplotlib's grace_hopper, and prints one SHA-256 line per output file (measure.json without its temporary paths).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.cbook
from PIL import Image
from skimage import data


def photos(folder: Path) -> list[Path]:
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        Image.open(f).convert("RGB").save(folder / "grace_hopper.png")
    return sorted(folder.glob("*.png"))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        inputs = [str(p) for p in photos(root / "in")]
        cli = [sys.executable, "-m", "digimask"]
        subprocess.run(cli + ["mask", *inputs, "-o", str(root / "out"), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(cli + ["measure", *inputs, "--json", str(root / "out" / "measure.json")], check=True,
                       stdout=subprocess.DEVNULL)
        for path in sorted((root / "out").iterdir()):
            data = path.read_bytes()
            if path.name == "measure.json":  # its records name the (temporary) input paths
                data = json.dumps([{**r, "path": Path(r["path"]).name} for r in json.loads(data)]).encode()
            print(hashlib.sha256(data).hexdigest(), path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
