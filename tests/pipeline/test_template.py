"""The neutral template: geometry built from the canonical face mesh asset, eye openings, eyeballs."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.pipeline.mask import template


def test_template_is_subdivided_canonical_mesh_with_two_eye_openings():
    tpl = template.load()
    assert tpl.landmarks.shape == (468, 3)
    assert len(tpl.vertices) > 4 * 468 and tpl.faces.max() < len(tpl.vertices)
    assert tpl.id == f"{template.TEMPLATE_ID}/{template.TEMPLATE_VERSION}"
    # Face about 15 cm wide (mm units), left eye at +x.
    assert 140 < np.ptp(tpl.landmarks[:, 0]) < 170
    assert tpl.eyes["left"].lateral[0] > tpl.eyes["left"].medial[0] > 0 > tpl.eyes["right"].medial[0]


def test_eye_margins_run_medial_to_lateral_and_sit_in_front_of_the_eyeball():
    tpl = template.load()
    for side, eye in tpl.eyes.items():
        assert eye.upper_t[0] == 0.0 and abs(eye.upper_t[-1] - 1.0) < 1e-6
        upper, lower = tpl.vertices[eye.upper_idx], tpl.vertices[eye.lower_idx]
        assert upper[:, 1].mean() > lower[:, 1].mean() + 3.0  # an open fissure, mm
        fissure = np.linalg.norm(eye.lateral - eye.medial)
        assert 22 < fissure < 32
        margin = np.vstack([upper, lower])
        gap = np.linalg.norm(margin - eye.eyeball_center, axis=1) - template.EYEBALL_RADIUS_MM
        assert gap.min() > 0.0, side  # the globe never pokes through the lids
        # Lid weights: margin vertices follow themselves exactly.
        rows = np.searchsorted(eye.region_idx, np.r_[eye.upper_idx, eye.lower_idx])
        np.testing.assert_allclose(eye.region_weights[rows].max(axis=1), 1.0)


def test_eyeball_mesh_has_exact_limbus_ring():
    dirs, faces, uv = template.eyeball_mesh(5.85)
    theta = np.degrees(np.arccos(np.clip(dirs[:, 2], -1, 1)))
    limbus = np.degrees(np.arcsin(5.85 / template.EYEBALL_RADIUS_MM))
    assert np.isclose(theta, limbus, atol=1e-3).sum() == 64
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-6)
    assert faces.max() < len(dirs) and uv.min() >= 0 and uv.max() <= 1



@pytest.mark.parametrize("radius", [5.1, 5.85, 6.3])
def test_eyeball_mesh_is_one_outward_surface_open_only_at_its_back(radius: float):
    dirs, faces, _ = template.eyeball_mesh(radius)
    tri = dirs[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normals * tri.mean(axis=1)).sum(axis=1) > 0).all()  # every triangle faces out
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert uses.max() == 2 and (uses == 1).sum() == 64  # no gap or overlap but the last ring's rim
    np.testing.assert_array_equal(faces, template.eyeball_mesh(5.85)[1])  # one topology for every iris size

def test_textures_are_painted_and_deterministic():
    tpl = template.load()
    skin = tpl.texture.reshape(-1, 3)
    assert len(np.unique(skin, axis=0)) > 50  # brows, lips, lashes, not a flat fill
    np.testing.assert_array_equal(template._paint_eye(), tpl.eye_texture)
    centre = tpl.eye_texture[256, 256].astype(int)
    assert centre.sum() < 100  # pupil
