"""``digimask measure`` end to end on real photos, a DICOM file made here and a non-face image."""
from __future__ import annotations

import json

import dicom_factory
import numpy as np
import pytest
from PIL import Image

from digimask.cli import main


def write_dicom(path, pixels: np.ndarray, spacing_mm: float) -> None:
    """An Ophthalmic Photography 8 Bit file (the test factory's) with a header pixel spacing."""
    ds = dicom_factory.op8("astro", pixels)
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    dicom_factory.save(ds, path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, grace_hopper: np.ndarray, astronaut: np.ndarray):
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(grace_hopper).save(folder / "grace.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg")
    write_dicom(folder / "astro.dcm", astronaut, 0.25)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_measure_batch_writes_json_and_pictures(inputs, tmp_path, capsys) -> None:
    out = tmp_path / "out.json"
    code = main(["measure", str(inputs), "--json", str(out), "--png", str(tmp_path / "png"), "--no-progress"])
    assert code == 1  # coffee is rejected
    records = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out.read_text())}
    assert set(records) == {"grace.png", "coffee.jpg", "astro.dcm"}
    assert records["coffee.jpg"]["status"] == "rejected"
    assert records["coffee.jpg"]["reason"] == "no face or eye found"
    grace = records["grace.png"]
    assert grace["status"] == "ok" and grace["mode"] == "face" and grace["reason"] is None
    assert set(grace["eyes"]) == {"right", "left"}
    for key in ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "fissure_width_mm", "gaze_h_deg", "gaze_v_deg",
                "iris_center_px", "iris_radius_px"):
        assert isinstance(grace["eyes"]["right"][key], (float, list))
    assert set(grace["head_pose"]) == {"yaw_deg", "pitch_deg", "roll_deg"}
    astro = records["astro.dcm"]
    assert astro["status"] == "ok" and astro["scale"]["source"] == "pixel_spacing"
    assert astro["scale"]["mm_per_px"] == 0.25
    picture = Image.open(tmp_path / "png" / "grace.png")
    assert picture.width == 900 and not (tmp_path / "png" / "coffee.png").exists()
    table = capsys.readouterr().out
    assert "grace.png" in table and "rejected no face or eye found" in table and "MRD1" in table


def test_measure_single_ok_image_exits_zero(inputs, capsys) -> None:
    assert main(["measure", str(inputs / "grace.png"), "--no-progress"]) == 0
    assert "face" in capsys.readouterr().out


def test_measure_with_nothing_to_read_is_a_usage_error(tmp_path) -> None:
    assert main(["measure", str(tmp_path), "--no-progress"]) == 2
