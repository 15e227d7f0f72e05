"""``digimask mask`` and ``digimask render`` end to end: images, a folder with a non-face, DICOM."""
from __future__ import annotations

import json

import dicom_factory as f
import numpy as np
import pydicom
import pytest
from PIL import Image

from digimask.cli import main
from digimask.pipeline.dicom import private_block


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, grace_hopper):
    folder = tmp_path_factory.mktemp("in")
    Image.fromarray(grace_hopper).save(folder / "hopper.jpg", quality=95)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(folder / "noise.png")
    return folder


@pytest.fixture(scope="module")
def masked(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = main(["mask", str(inputs), "-o", str(out), "--preview", "--no-progress"])
    return code, out


def test_folder_batch_writes_masks_and_names_rejections(masked, inputs, grace_hopper, capsys):
    code, out = masked
    assert code == 1  # the noise image has no face
    mask = np.asarray(Image.open(out / "hopper.png"))
    assert mask.shape == grace_hopper.shape
    assert np.abs(mask.astype(int) - grace_hopper).mean() > 20
    preview = np.asarray(Image.open(out / "hopper.preview.png"))
    assert preview.shape == (grace_hopper.shape[0], 2 * grace_hopper.shape[1], 3)
    params = json.loads((out / "hopper.params.json").read_text())
    assert params["schema"] == "digimask.params/2"
    assert not (out / "noise.png").exists()


def test_rejections_are_printed_with_reasons(inputs, tmp_path, capsys):
    code = main(["mask", str(inputs / "noise.png"), "-o", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "noise.png" in err and "rejected" in err


def test_render_from_params_json_equals_the_mask(masked, tmp_path):
    _, out = masked
    assert main(["render", str(out / "hopper.params.json"), "-o", str(tmp_path / "again.png")]) == 0
    again, first = (np.asarray(Image.open(p)) for p in (tmp_path / "again.png", out / "hopper.png"))
    np.testing.assert_array_equal(again, first)


def test_dicom_is_deidentified_masked_and_rerenderable(astronaut, tmp_path):
    src = f.save(f.op8("astronaut", astronaut), tmp_path / "astro.dcm")
    config = tmp_path / "node.toml"
    config.write_text('[node]\nallowed_calling_aes = ["SCU"]\n[deid]\nsecret = "test-key"\n')
    out = tmp_path / "out"
    assert main(["mask", str(src), "-o", str(out), "--config", str(config), "--no-progress"]) == 0
    ds = pydicom.dcmread(out / "astro.dcm")
    assert ds.PatientIdentityRemoved == "YES"
    schema, masker, params = private_block.read(ds)
    assert masker == "digital_mask" and schema == params["schema"]
    assert main(["render", str(out / "astro.dcm"), "-o", str(tmp_path / "r.png")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "r.png")), ds.pixel_array)


def test_dicom_without_config_is_rejected(astronaut, tmp_path, capsys):
    src = f.save(f.op8("astronaut", astronaut), tmp_path / "astro.dcm")
    assert main(["mask", str(src), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    assert "--config" in capsys.readouterr().err


def test_the_stored_renderer_is_used_to_re_render(inputs, tmp_path):
    out = tmp_path / "out"
    args = ["mask", str(inputs / "hopper.jpg"), "-o", str(out), "--renderer", "pyrender"]
    assert main(args + ["--no-progress"]) == 0
    assert json.loads((out / "hopper.params.json").read_text())["renderer"] == "pyrender"
    assert main(["render", str(out / "hopper.params.json"), "-o", str(tmp_path / "again.png")]) == 0
    again, first = (np.asarray(Image.open(p)) for p in (tmp_path / "again.png", out / "hopper.png"))
    np.testing.assert_array_equal(again, first)


def test_parallel_workers_give_the_same_masks(inputs, masked, tmp_path):
    """``--workers 2`` masks in two processes (one render context each): the same bytes as one worker."""
    _, one = masked
    Image.fromarray(np.asarray(Image.open(inputs / "hopper.jpg"))[:, ::-1]).save(tmp_path / "mirrored.png")
    args = ["mask", str(inputs / "hopper.jpg"), str(tmp_path / "mirrored.png"), "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert main(args + ["-o", str(tmp_path / "single"), "--workers", "1"]) == 0
    for name in ("hopper.png", "hopper.params.json", "mirrored.png"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    assert (tmp_path / "two" / "hopper.png").read_bytes() == (one / "hopper.png").read_bytes()
