"""Corpus layouts: one sub-folder per identity, or a manifest."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.evaluation.corpus import CorpusError, load_corpus, read_image
from digimask.pipeline.errors import Quarantined
from PIL import Image


def _save(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path)


def test_folders_give_identities(tmp_path):
    _save(tmp_path / "bob" / "2.png")
    _save(tmp_path / "bob" / "1.jpg")
    _save(tmp_path / "alice" / "x.PNG")
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    entries = load_corpus(tmp_path)
    assert [(e.identity, e.path.name) for e in entries] == [("alice", "x.PNG"), ("bob", "1.jpg"), ("bob", "2.png")]


def test_manifest_overrides_folders(tmp_path):
    _save(tmp_path / "imgs" / "a.png")
    _save(tmp_path / "imgs" / "b.png")
    (tmp_path / "manifest.csv").write_text("path,identity,session\nimgs/a.png,p1,visit 1\nimgs/b.png,p2,\n")
    assert [(e.identity, e.path.name, e.session) for e in load_corpus(tmp_path)] == [
        ("p1", "a.png", "visit 1"), ("p2", "b.png", None)]


def test_bad_corpora_are_refused(tmp_path):
    with pytest.raises(CorpusError):
        load_corpus(tmp_path)  # empty
    (tmp_path / "manifest.csv").write_text("path,identity\nmissing.png,p1\n")
    with pytest.raises(CorpusError, match="do not exist"):
        load_corpus(tmp_path)
    (tmp_path / "manifest.csv").write_text("file,who\nmissing.png,p1\n")
    with pytest.raises(CorpusError, match="columns"):
        load_corpus(tmp_path)


def test_read_image_is_rgb_and_scaled_down(tmp_path):
    Image.new("L", (2000, 1000), 128).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png", max_side=500)
    assert image.shape == (250, 500, 3) and image.dtype == np.uint8
    assert read_image(tmp_path / "grey.png", max_side=None).shape == (1000, 2000, 3)


def test_dicom_photos_are_read_from_their_pixel_data(tmp_path, astronaut):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # Ophthalmic Photography 8 Bit
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.Rows, ds.Columns = astronaut.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = astronaut.tobytes()
    (tmp_path / "p1").mkdir()
    ds.save_as(tmp_path / "p1" / "eye.dcm", enforce_file_format=True)
    (entry,) = load_corpus(tmp_path)
    assert entry.path.suffix == ".dcm"
    assert np.array_equal(read_image(entry.path, max_side=None), astronaut)
    (tmp_path / "p1" / "broken.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(Quarantined):
        read_image(tmp_path / "p1" / "broken.dcm")
