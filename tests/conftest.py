"""Shared fixtures. Test images come from packages the project installs, never from ../shared."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real frontal face photograph (NASA, public domain), 512x512 RGB, from scikit-image."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    """A real frontal face with glasses, 600x512 RGB, from matplotlib's sample data."""
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture
def orthanc(tmp_path):  # type: ignore[no-untyped-def]
    """A real Orthanc PACS for one test, with the DCMTK tools that talk to it (scripts/setup installs both)."""
    from peers import Orthanc, require

    require("storescu", "echoscu", "Orthanc", "dciodvfy")
    pacs = Orthanc(tmp_path / "orthanc").start()
    yield pacs
    pacs.stop()
