"""A Video Photographic instance (H.264) end to end: DCMTK storescu -> digimask serve (digital mask) -> Orthanc.
A video without a face is quarantined and the node keeps serving."""
from __future__ import annotations

import io
import signal
from pathlib import Path

import dicom_factory as f
import numpy as np
import pydicom
import pytest
import video_factory as vf
from digimask.config.settings import load
from digimask.pipeline.dicom import private_block
from digimask.pipeline.dicom.video import iter_frames
from digimask.pipeline.mask.digital_mask import render_params
from digimask.pipeline.mask.video import series_params
from digimask.storage.models import State
from digimask.storage.store import open_store
from peers import (
    NodeProcess,
    dciodvfy_errors,
    free_port,
    node_config,
    storescu,
    wait_for,
)
from pydicom.encaps import generate_fragments

pytestmark = pytest.mark.peers



def test_video_photographic_through_the_node(orthanc, astronaut, tmp_path: Path) -> None:
    frames = vf.jittered(vf.small(astronaut, 384), 8, px=1)
    clip = f.save(vf.video_photographic("video-face", frames), tmp_path / "clip.dcm")
    noface = f.save(vf.video_photographic("video-none", [np.full_like(frames[0], 90)] * 8), tmp_path / "none.dcm")
    port = free_port()
    node = NodeProcess(node_config(tmp_path / "node", port, {"ORTHANC": orthanc.dicom_port}, masker="digital_mask"),
                       port).start()
    try:
        sent = storescu(node.port, [clip, noface], extra=["-R", "-xn"])  # the files' SOP class, with H.264 HP / Level 4.1
        assert sent.returncode == 0, sent.stderr
        store = open_store(load(node.config))
        wait_for(lambda: store.counts() == {"done": 1, "quarantined": 1}, 240, "one forwarded, one quarantined")
        (oid,) = orthanc.instances()
        out = pydicom.dcmread(io.BytesIO(orthanc.file(oid)))
        again = storescu(node.port, [clip], extra=["-R", "-xn"])  # still serving after the quarantine
        assert again.returncode == 0, again.stderr
    finally:
        node.kill(signal.SIGTERM)
    (quarantined,) = store.instances(State.QUARANTINED)
    assert "unmaskable: no face or eye found" in quarantined.reason
    assert out.SOPClassUID == vf.VIDEO and out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.102"
    assert (out.NumberOfFrames, out.FrameTime, out.CineRate) == (8, "33.3333", 30)
    target = tmp_path / "arrived.dcm"
    out.save_as(target, enforce_file_format=True)
    assert dciodvfy_errors(target) == []
    decoded = list(iter_frames(b"".join(generate_fragments(out.PixelData)), "h264"))
    _, _, params = private_block.read(out)
    rendered = [render_params(p) for p in series_params(params, private_block.read_frames(out))]
    assert len(decoded) == len(rendered) == 8
    for d, r, original in zip(decoded, rendered, frames):  # every frame is the mask, none the patient
        assert np.abs(d.astype(int) - r).mean() < 1.0
        assert np.abs(d.astype(int) - original).mean() > 20
