"""A small corpus built from installed-package photos, evaluated once for the module tests."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

MASKERS = ["original", "blank", "blur:sigma_fraction=0.02", "eye_crop"]


def build_corpus(root: Path, photos: dict[str, np.ndarray]) -> Path:
    """Three images per identity: the photo, its mirror image, and a brighter crop of it."""
    for identity, array in photos.items():
        img = Image.fromarray(array)
        folder = root / identity
        folder.mkdir(parents=True)
        img.save(folder / "photo.png")
        img.transpose(Image.FLIP_LEFT_RIGHT).save(folder / "mirrored.png")
        w, h = img.size
        crop = img.crop((w // 16, h // 16, w - w // 16, h - h // 16))
        ImageEnhance.Brightness(crop).enhance(1.2).save(folder / "brighter_crop.png")
    return root


def _run_command(argv: list[str]) -> int:
    from digimask.commands.evaluate import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="session")
def run_command():
    """Run ``digimask evaluate ...`` through the command module; returns its exit code."""
    return _run_command


@pytest.fixture(scope="session")
def masker_specs() -> list[str]:
    return list(MASKERS)


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, astronaut, grace_hopper) -> tuple[Path, dict]:
    """(report folder, results.json) of ``digimask evaluate`` on the small corpus."""
    root = tmp_path_factory.mktemp("eval")
    corpus = build_corpus(root / "corpus", {"astronaut": astronaut, "hopper": grace_hopper})
    out = root / "report"
    assert _run_command(["evaluate", str(corpus), "-o", str(out), "--no-progress", "--maskers", *MASKERS]) == 0
    return out, json.loads((out / "results.json").read_text())
