"""scripts/fetch_corpus.py: the pinned photos that come from installed packages (no network here)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_corpus.py"


@pytest.fixture(scope="module")
def fetch_corpus():
    spec = importlib.util.spec_from_file_location("fetch_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_installed_photos_match_their_pinned_sha256(fetch_corpus, tmp_path):
    installed = [s for s in fetch_corpus.SOURCES if s.registry == "installed"]
    assert {s.package for s in installed} == {"scikit-image", "matplotlib"}
    for source in installed:
        files = fetch_corpus.extract(source, tmp_path)
        for photo in source.photos:
            assert fetch_corpus.sha256(files[photo.name]) == photo.sha256


def test_pins_are_well_formed(fetch_corpus):
    photos = [p for s in fetch_corpus.SOURCES for p in s.photos]
    assert all(len(p.sha256) == 64 and int(p.sha256, 16) >= 0 for p in photos)
    assert all(s.registry == "installed" or len(s.sha256) == 64 for s in fetch_corpus.SOURCES)
    assert len({p.sha256 for p in photos}) == len(photos)  # no photo twice
    identities = {p.identity for p in photos}
    assert len(identities) == 23
