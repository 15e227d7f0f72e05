"""The fitter recovers known avatar parameters from landmarks, and fits real photographs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from digimask.pipeline.eyes.analyse import Analysis, analyse
from digimask.pipeline.eyes.landmarks import EyeLandmarks
from digimask.pipeline.eyes.measure import HeadPose, measure
from digimask.pipeline.mask import avatar, fit
from digimask.pipeline.mask.drawn import drawn_eyes
from digimask.pipeline.mask.params import AvatarParams, Camera, Eye, Head
from digimask.pipeline.mask.template import load

TRUE_EYES = {
    "right": Eye((0.8, -0.3), (-0.5, 0.4), (1.5, 0.3, -0.2), (-0.8, 0.1, 0.0), -8.0, 6.0, 5.4),
    "left": Eye((0.2, 0.5), (0.6, -0.2), (0.4, -0.2, 0.1), (0.6, 0.0, 0.1), 12.0, -4.0, 6.1),
}


def _synthetic(head: Head, eyes: dict[str, Eye], size=(1024, 768), closeup=False) -> Analysis:
    """An Analysis whose landmarks are the projections of a known avatar (what a perfect detector sees)."""
    tpl = load()
    cam = Camera(size[0], size[1], fit.FOCAL_FACTOR * max(size), size[0] / 2, size[1] / 2)
    h = torch.tensor([head.yaw_deg, head.pitch_deg, head.roll_deg, *head.translation_mm], dtype=torch.float64)
    c = torch.tensor([cam.focal_px, cam.cx, cam.cy], dtype=torch.float64)

    def px(points) -> np.ndarray:
        return avatar.project(avatar.to_camera(torch.as_tensor(points, dtype=torch.float64), h), c).numpy()

    found = {}
    for side, e in eyes.items():
        et, p = tpl.eyes[side], torch.tensor(e.as_vector(), dtype=torch.float64)
        sign, centre = torch.tensor(et.sign, dtype=torch.float64), torch.as_tensor(et.eyeball_center)
        t = np.linspace(0, 1, 9)
        lids = []
        for upper in (True, False):
            base = torch.as_tensor(avatar.margin_template(et, tpl, t, upper))
            lids.append(px(avatar.lid_points(p, torch.as_tensor(t), base, sign, centre, upper))[::-1])
        limbus = px(avatar.limbus(p, centre, sign))
        radius = float(np.linalg.norm(limbus[1:] - limbus[0], axis=1).mean())
        found[side] = EyeLandmarks(side, lids[0], lids[1], lids[0][-1], lids[0][0], limbus[0], radius, limbus[1:])
    pose = None if closeup else HeadPose(head.yaw_deg, head.pitch_deg, head.roll_deg)
    face = None if closeup else np.c_[px(tpl.landmarks), np.zeros(468)]
    return Analysis("closeup" if closeup else "face", size, found, face, pose, measure(found, pose))


def test_recovers_head_pose_lids_and_gaze_from_perfect_landmarks():
    head = Head(12.0, -7.0, 4.0, (15.0, -10.0, -600.0))
    got = fit.fit(_synthetic(head, TRUE_EYES))
    assert abs(got.head.yaw_deg - 12) < 0.2 and abs(got.head.pitch_deg + 7) < 0.2 and abs(got.head.roll_deg - 4) < 0.2
    np.testing.assert_allclose(got.head.translation_mm, head.translation_mm, atol=2.0)
    for side, true in TRUE_EYES.items():
        e = got.eyes[side]
        assert abs(e.gaze_yaw_deg - true.gaze_yaw_deg) < 0.5 and abs(e.gaze_pitch_deg - true.gaze_pitch_deg) < 0.5
        assert abs(e.iris_radius_mm - true.iris_radius_mm) < 0.1
        np.testing.assert_allclose(e.upper_lid_mm[0], true.upper_lid_mm[0], atol=0.2)
        np.testing.assert_allclose(e.lower_lid_mm[0], true.lower_lid_mm[0], atol=0.2)
        np.testing.assert_allclose(e.medial_shift_mm + e.lateral_shift_mm,
                                   true.medial_shift_mm + true.lateral_shift_mm, atol=0.25)


def test_closeup_keeps_head_frontal_and_lands_on_the_canthi():
    eyes = {"left": Eye(upper_lid_mm=(2.0, 0, 0), gaze_yaw_deg=-10.0, iris_radius_mm=5.6)}
    analysis = _synthetic(Head(0, 0, 8.0, (-30.0, -26.0, -120.0)), eyes, size=(640, 480), closeup=True)
    got = fit.fit(analysis)
    assert got.mode == "closeup" and got.head.yaw_deg == 0 and got.head.pitch_deg == 0
    assert abs(got.head.roll_deg - 8) < 0.3
    e, drawn, true = got.eyes["left"], drawn_eyes(got)["left"], analysis.eyes["left"]
    assert abs(e.gaze_yaw_deg + 10) < 0.5 and abs(e.upper_lid_mm[0] - 2.0) < 0.2
    for part in ("medial_canthus", "lateral_canthus", "iris_center"):
        assert np.linalg.norm(getattr(drawn, part) - getattr(true, part)) < 0.05, part


def test_batch_equals_single_fits():
    a = _synthetic(Head(5, 3, -2, (0, 0, -500)), TRUE_EYES)
    b = _synthetic(Head(-9, 1, 3, (20, 10, -700)), {"right": Eye(gaze_yaw_deg=5), "left": Eye(gaze_yaw_deg=5)})
    batch = fit.fit_batch([a, b])
    for single, batched in zip((fit.fit(a), fit.fit(b)), batch):
        for side in single.eyes:
            np.testing.assert_allclose(single.eyes[side].as_vector(), batched.eyes[side].as_vector(), atol=2e-3)


def test_params_of_a_real_photo_hold_no_landmarks(astronaut):
    a = analyse(astronaut)
    p = fit.fit(a)
    assert set(p.eyes) == {"right", "left"}
    # The fitted avatar's limbus projects onto the patient's iris.
    tpl = load()
    h = torch.tensor([p.head.yaw_deg, p.head.pitch_deg, p.head.roll_deg, *p.head.translation_mm], dtype=torch.float64)
    c = torch.tensor([p.camera.focal_px, p.camera.cx, p.camera.cy], dtype=torch.float64)
    for side, e in p.eyes.items():
        centre, sign = torch.as_tensor(tpl.eyes[side].eyeball_center), torch.tensor(tpl.eyes[side].sign)
        limbus = avatar.limbus(torch.tensor(e.as_vector(), dtype=torch.float64), centre, sign)
        iris = avatar.project(avatar.to_camera(limbus, h), c)[0].numpy()
        assert np.linalg.norm(iris - a.eyes[side].iris_center) < 1.0
    d = p.to_dict()
    assert AvatarParams.from_dict(json.loads(json.dumps(d))) == p
    assert set(d) == {"schema", "template", "mode", "camera", "head", "eyes", "measurements", "greyscale",
                      "renderer"}
    for side, eye in d["eyes"].items():  # 13 fitted numbers per eye and the reflex, nothing else
        reflex = eye.pop("reflex")
        found = a.eyes[side].reflex
        assert (reflex is None) == (found is None)
        if found is not None:  # an offset from the limbus centre in iris radii, not an image position
            np.testing.assert_allclose(reflex, (found - a.eyes[side].iris_center) / a.eyes[side].iris_radius, atol=1e-4)
        assert len(np.concatenate([np.ravel(v) for v in eye.values()])) == 13

    def keys(x):
        return [k for k, v in x.items() for k in (k, *(keys(v) if isinstance(v, dict) else ()))]

    assert not [k for k in keys(d["measurements"]) if k.endswith("_px")]


def test_unknown_schema_is_refused():
    with pytest.raises(ValueError, match="schema"):
        AvatarParams.from_dict({"schema": "digimask.params/99"})
