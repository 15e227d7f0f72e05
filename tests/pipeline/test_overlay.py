"""The drawn geometry document: the avatar's projected eyes from the parameters alone, in image pixels."""
from __future__ import annotations

import json

import numpy as np
from digimask.pipeline.mask.drawn import drawn_eyes
from digimask.pipeline.mask.overlay import LID_POINTS, SCHEMA, drawn_geometry
from digimask.pipeline.mask.params import AvatarParams, Camera, Eye, Head

PARAMS = AvatarParams("t", "face", Camera(512, 384, 768.0, 256.0, 192.0), Head(yaw_deg=8.0),
                      {"right": Eye(gaze_yaw_deg=5.0), "left": Eye(reflex=(0.1, -0.2))})


def test_the_drawn_eyes_rounded_to_a_tenth_of_a_pixel() -> None:
    doc = drawn_geometry(PARAMS.to_dict())
    assert doc is not None and doc["schema"] == SCHEMA and doc["image"] == {"width": 512, "height": 384}
    drawn = drawn_eyes(PARAMS)
    for side, eye in doc["eyes"].items():
        d = drawn[side]
        assert len(eye["upper_lid"]) == len(eye["lower_lid"]) == LID_POINTS
        assert np.abs(np.array(eye["upper_lid"]) - d.upper_lid).max() <= 0.05
        assert np.abs(np.array(eye["lower_lid"]) - d.lower_lid).max() <= 0.05
        assert np.abs(np.array(eye["limbus"]["centre"]) - d.iris_center).max() <= 0.05
        assert abs(eye["limbus"]["radius"] - d.iris_radius) <= 0.05
        assert eye["lateral_canthus"] == eye["upper_lid"][0] and eye["medial_canthus"] == eye["upper_lid"][-1]
    assert doc["eyes"]["right"]["reflex"] is None  # none measured, none drawn
    left = doc["eyes"]["left"]
    expected = np.array(left["limbus"]["centre"]) + np.array([0.1, -0.2]) * left["limbus"]["radius"]
    assert np.abs(np.array(left["reflex"]) - expected).max() <= 0.1
    assert json.loads(json.dumps(doc)) == doc  # plain JSON


def test_none_for_parameters_of_another_masker() -> None:
    assert drawn_geometry({}) is None
    assert drawn_geometry({"schema": "other.params/1", "eyes": {}}) is None
