"""What the mask draws, as geometry in the image, and its exact check against what was measured.

The avatar's own lid margins (canthus to canthus), limbus and canthi are projected into the image with
the fitted parameters (no pixels are read) and measured with the analysis stage's own measurement code,
at the patient's scale and head pose. A mask whose drawn MRD1/MRD2, fissure, iris or gaze differ from the
patient's by more than ``TOLERANCE_MM`` / ``TOLERANCE_DEG`` is refused with the numbers, never sent silently
wrong. Cheap: a few hundred projected points per eye.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from digimask.pipeline.eyes.analyse import Analysis
from digimask.pipeline.eyes.landmarks import EyeLandmarks
from digimask.pipeline.eyes.measure import Measurements, measure, prism_dioptres
from digimask.pipeline.mask import avatar
from digimask.pipeline.mask.params import AvatarParams
from digimask.pipeline.mask.template import load

TOLERANCE_MM = 0.1
TOLERANCE_DEG = 0.5
TOLERANCE_PD = 1.0  # binocular deviation: no squint drawn that was not measured
MARGIN_SAMPLES = np.linspace(0.0, 1.0, 33)  # fractions from the medial to the lateral canthus
LENGTHS = ("mrd1_mm", "mrd2_mm", "fissure_height_mm", "fissure_width_mm", "iris_diameter_mm")
ANGLES = ("gaze_h_deg", "gaze_v_deg")


def drawn_eyes(params: AvatarParams) -> dict[str, EyeLandmarks]:
    """Each drawn eye as image-pixel geometry, in the analysis' conventions (lids lateral -> medial)."""
    tpl = load()
    h, c = params.head, params.camera
    head = torch.tensor([h.yaw_deg, h.pitch_deg, h.roll_deg, *h.translation_mm], dtype=torch.float64)
    cam = torch.tensor([c.focal_px, c.cx, c.cy], dtype=torch.float64)
    t = torch.as_tensor(MARGIN_SAMPLES, dtype=torch.float64)
    out = {}
    with torch.no_grad():
        for side, eye in params.eyes.items():
            et = tpl.eyes[side]
            p = torch.tensor(eye.as_vector(), dtype=torch.float64)
            sign, centre = torch.tensor(et.sign, dtype=torch.float64), torch.as_tensor(et.eyeball_center, dtype=torch.float64)
            lids = [avatar.lid_points(p, t, torch.as_tensor(avatar.margin_template(et, tpl, MARGIN_SAMPLES, upper)),
                                      sign, centre, upper) for upper in (True, False)]
            pts = torch.cat([*lids, avatar.limbus(p, centre, sign)])
            proj = avatar.project(avatar.to_camera(pts, head), cam).numpy()
            n = len(MARGIN_SAMPLES)
            upper, lower, limbus = proj[:n], proj[n:2 * n], proj[2 * n:]
            rim = limbus[1:]
            radius = float(np.linalg.norm(rim - limbus[0], axis=1).mean())
            drawn = EyeLandmarks(
                side=side, upper_lid=upper[::-1].copy(), lower_lid=lower[::-1].copy(),
                medial_canthus=upper[0].copy(), lateral_canthus=upper[-1].copy(), iris_center=limbus[0].copy(),
                iris_radius=radius, iris_rim=rim.copy(),
            )
            if eye.reflex is not None:
                drawn = replace(drawn, reflex=limbus[0] + np.asarray(eye.reflex) * radius)
            out[side] = drawn
    return out


@dataclass(frozen=True)
class DrawnCheck:
    """Drawn minus measured, per eye and measurement (mm, degrees), and the binocular deviation (PD)."""

    differences: dict[str, float]

    @property
    def worst_mm(self) -> float:
        return max((abs(v) for k, v in self.differences.items() if k.endswith("_mm")), default=0.0)

    @property
    def worst_deg(self) -> float:
        return max((abs(v) for k, v in self.differences.items() if k.endswith("_deg")), default=0.0)

    @property
    def worst_pd(self) -> float:
        return max((abs(v) for k, v in self.differences.items() if k.endswith("_pd")), default=0.0)

    @property
    def ok(self) -> bool:
        return self.worst_mm <= TOLERANCE_MM and self.worst_deg <= TOLERANCE_DEG and self.worst_pd <= TOLERANCE_PD

    def reason(self) -> str:
        """The failing differences, for the quarantine reason (numbers only, no PHI)."""
        limit = {"mm": TOLERANCE_MM, "deg": TOLERANCE_DEG, "pd": TOLERANCE_PD}
        bad = [f"{k} {v:+.2f}" for k, v in self.differences.items() if abs(v) > limit[k.rsplit("_", 1)[1]]]
        return (f"drawn geometry differs from the measured (limits {TOLERANCE_MM} mm, {TOLERANCE_DEG} deg, "
                f"{TOLERANCE_PD} PD): " + ", ".join(bad))

    def to_dict(self) -> dict[str, float]:
        return {"worst_mm": round(self.worst_mm, 3), "worst_deg": round(self.worst_deg, 3),
                "worst_pd": round(self.worst_pd, 3)}


def measure_drawn(params: AvatarParams, patient: Analysis) -> Measurements:
    """The drawn eyes measured by the analysis' code at the patient's scale and head pose."""
    return measure(drawn_eyes(params), patient.head_pose, pixel_spacing_mm=patient.measurements.scale.mm_per_px)


def check_drawn(params: AvatarParams, patient: Analysis) -> DrawnCheck:
    """Compare the drawn geometry with the patient's measurements (see the module docstring)."""
    drawn, measured = measure_drawn(params, patient), patient.measurements
    diff: dict[str, float] = {}
    for side, m in measured.eyes.items():
        d = drawn.eyes.get(side)
        for name in (*LENGTHS, *ANGLES):
            diff[f"{side}.{name}"] = float(getattr(d, name) - getattr(m, name)) if d is not None else float("inf")
    if measured.binocular is not None:
        b = drawn.binocular
        for name in ("horizontal", "vertical"):
            got = getattr(b, f"{name}_deg") if b is not None else float("inf")
            diff[f"deviation_{name}_pd"] = prism_dioptres(got) - getattr(measured.binocular, f"{name}_pd")
    return DrawnCheck({k: v if np.isfinite(v) else float("inf") for k, v in diff.items()})
