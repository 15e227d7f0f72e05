"""What the mask drew, as a small JSON document: the console draws it over the masked image.

Schema ``digimask.geometry/1``: the masked frame's ``image`` size and, per drawn eye, the upper and lower lid
margins (``LID_POINTS`` points each, lateral to medial canthus), the canthi, the limbus (centre, radius) and
the corneal reflex (``null`` where none was drawn), in image pixels (x right, y down), rounded to 0.1 px.

Computed from the mask's parameters alone (``drawn.drawn_eyes``), so it says nothing the DIGIMASK block does
not: no pixel is read and no landmark of the patient is kept.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from digimask.pipeline.mask.drawn import MARGIN_SAMPLES, drawn_eyes
from digimask.pipeline.mask.params import READABLE_SCHEMAS, AvatarParams

SCHEMA = "digimask.geometry/1"
LID_POINTS = len(MARGIN_SAMPLES)


def drawn_geometry(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The document for a digital mask's parameters; ``None`` for another masker's."""
    if params.get("schema") not in READABLE_SCHEMAS:
        return None
    p = AvatarParams.from_dict(dict(params))
    eyes = {
        side: {
            "upper_lid": _points(e.upper_lid), "lower_lid": _points(e.lower_lid),
            "medial_canthus": _point(e.medial_canthus), "lateral_canthus": _point(e.lateral_canthus),
            "limbus": {"centre": _point(e.iris_center), "radius": round(float(e.iris_radius), 1)},
            "reflex": _point(e.reflex) if e.reflex is not None else None,
        }
        for side, e in drawn_eyes(p).items()
    }
    return {"schema": SCHEMA, "image": {"width": p.camera.width, "height": p.camera.height}, "eyes": eyes}


def _point(p: np.ndarray) -> list[float]:
    return [round(float(p[0]), 1), round(float(p[1]), 1)]


def _points(points: np.ndarray) -> list[list[float]]:
    return [_point(p) for p in points]
