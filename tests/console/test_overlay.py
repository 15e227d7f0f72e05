"""The drawn eye geometry over the masked image: kept by the worker of a running node (the digital mask,
DCMTK storescu as the modality), served by the API and drawn as SVG on the instance page, viewer role up."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import dicom_factory as f
import numpy as np
import pytest
from console.support import masked_held, phi_of
from digimask.pipeline.mask.overlay import LID_POINTS, drawn_geometry
from peers import wait_for
from PIL import Image

pytestmark = pytest.mark.peers
SVG = "{http://www.w3.org/2000/svg}"


def test_overlay_of_the_drawn_geometry(astronaut, start_console, tmp_path, monkeypatch, capsys) -> None:
    console, sent = masked_held(astronaut, start_console, tmp_path, monkeypatch, capsys)
    viewer = console.login("vera")
    (inst,) = wait_for(lambda: [i for i in viewer.get("/api/v1/instances").json() if i["masked_available"]], 180,
                       "the masked output")
    iid = inst["id"]
    assert console.client().get(f"/api/v1/instances/{iid}/geometry").status_code == 401

    doc = viewer.get(f"/api/v1/instances/{iid}/geometry").json()
    params = viewer.get(f"/api/v1/instances/{iid}/mask").json()["params"]
    assert doc == drawn_geometry(params)  # what the block's parameters draw, nothing else
    masked = Image.open(io.BytesIO(viewer.get(f"/api/v1/instances/{iid}/masked.png").content))
    w, h = masked.size
    assert doc["image"] == {"width": w, "height": h} == {"width": 512, "height": 512}
    assert set(doc["eyes"]) == {"right", "left"}
    for eye in doc["eyes"].values():
        assert len(eye["upper_lid"]) == len(eye["lower_lid"]) == LID_POINTS
        assert eye["upper_lid"][0] == eye["lateral_canthus"] and eye["upper_lid"][-1] == eye["medial_canthus"]
        assert 2 < eye["limbus"]["radius"] < 20

    page = viewer.get(f"/instances/{iid}")
    assert 'id="overlay-on"' in page.text and "<svg" not in page.text  # a plain link turns it on
    for query, enlarged in (("overlay=1", False), ("overlay=eyes", True)):
        html = viewer.get(f"/instances/{iid}?{query}").text
        svg = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + 6])
        x0, y0, vw, vh = map(float, svg.get("viewBox").split())
        if enlarged:  # cropped to the eyes
            assert 0 <= x0 and 0 <= y0 and x0 + vw <= w and y0 + vh <= h and vw < w / 2
        else:
            assert (x0, y0, vw, vh) == (0, 0, w, h)
        (image,) = svg.iter(f"{SVG}image")
        assert image.get("href") == f"/api/v1/instances/{iid}/masked.png" and (image.get("width"), image.get("height")) == ("512", "512")
        eyes = svg.findall(f"{SVG}g")
        assert sorted(g.get("id") for g in eyes) == ["eye-left", "eye-right"]
        for g in eyes:
            lids = [np.array([p.split(",") for p in pl.get("points").split()], float) for pl in g.iter(f"{SVG}polyline")]
            assert [len(p) for p in lids] == [LID_POINTS, LID_POINTS]
            marks = [(float(c.get("cx")), float(c.get("cy"))) for c in g.iter(f"{SVG}circle")]
            assert len(marks) == 4 + (doc["eyes"][g.get("id")[4:]]["reflex"] is not None)  # limbus, centre, 2 canthi
            points = np.vstack([*lids, marks])
            assert (points >= (x0, y0)).all() and (points <= (x0 + vw, y0 + vh)).all()  # inside the image (and view)
        assert 'id="overlay-off"' in html

    console.stop()
    text = "\n".join(console.seen) + console.node.log()
    for value in phi_of(sent):
        assert value not in text, f"{value!r} reached the console or the log"


def test_the_worker_keeps_the_geometry_of_the_digital_mask_only(astronaut, tmp_path, caplog) -> None:
    """Another masker's output keeps none; a block that cannot be drawn is logged, never fails the instance."""
    from digimask.config.settings import parse
    from digimask.pipeline.dicom import private_block
    from digimask.pipeline.mask.params import AvatarParams, Camera, Eye, Head
    from digimask.scp_node.worker import keep_drawn_geometry
    from digimask.storage.overview import drawn_geometry as kept
    from digimask.storage.store import open_store

    store = open_store(parse({"node": {"allowed_calling_aes": ["STORESCU"]}, "deid": {"secret": "k"},
                              "storage": {"data_dir": "data"}}, tmp_path))
    ids = [store.receive(b"x", f"2.25.{k}", "1.2.3", "STORESCU", "DIGIMASK") for k in range(3)]
    params = AvatarParams("t", "face", Camera(128, 128, 192.0, 64.0, 64.0), Head(), {"right": Eye()}).to_dict()
    blank, good, broken = (f.op8("geometry", astronaut[::4, ::4].copy()) for _ in range(3))
    private_block.write(blank, "none", "blank", {})
    private_block.write(good, params["schema"], "digital_mask", params)
    private_block.write(broken, params["schema"], "digital_mask", {**params, "eyes": {"right": {"gaze": 1}}})
    for iid, out in zip(ids, (blank, good, broken), strict=True):
        keep_drawn_geometry(store, iid, out)
    assert kept(store, ids[0]) is None and kept(store, ids[2]) is None
    assert kept(store, ids[1]) == drawn_geometry(params) and set(kept(store, ids[1])["eyes"]) == {"right"}
    (logged,) = [r.getMessage() for r in caplog.records]
    assert logged.startswith(f"instance {ids[2]}: the drawn geometry was not kept (TypeError")
