"""``digimask measure`` with its uncertainties, references and the fitted geometry (issue 12)."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from digimask.cli import main


def test_fitted_geometry_reports_uncertainty_reference_and_fit(grace_hopper: np.ndarray, tmp_path, capsys) -> None:
    photo = tmp_path / "grace.png"
    Image.fromarray(grace_hopper).resize((900, 768), Image.LANCZOS).save(photo)  # eyes 45 px wide: fitted
    out = tmp_path / "out.json"
    code = main(["measure", str(photo), "--geometry", "edges", "--fixation-distance-mm", "500",
                 "--json", str(out), "--png", str(tmp_path / "png"), "--no-progress"])
    assert code == 0
    record = json.loads(out.read_text())[0]
    for eye in record["eyes"].values():
        assert eye["reference"] in ("reflex", "limbus")
        for key in ("mrd1", "mrd2", "fissure_height", "iris_diameter"):
            assert 0 < eye[f"{key}_sd_mm"] < 0.5 * abs(eye[f"{key}_mm"])
        assert eye["gaze_h_sd_deg"] > 0
        assert eye["fit"]["limbus"]["ok"] and eye["fit"]["upper_lid"]["ok"] and eye["fit"]["lower_lid"]["ok"]
        assert 0 < eye["fit"]["upper_lid"]["rms_px"] < 2
    binocular = record["binocular"]
    ipd = np.linalg.norm(np.subtract(record["eyes"]["left"]["iris_center_px"],
                                     record["eyes"]["right"]["iris_center_px"])) * record["scale"]["mm_per_px"]
    assert binocular["fixation_distance_mm"] == 500
    assert binocular["convergence_deg"] == np.float64(2 * np.degrees(np.arctan(ipd / 2 / 500))).item()
    assert "hirschberg_pd" in binocular
    assert Image.open(tmp_path / "png" / "grace.png").width == 900
    table = capsys.readouterr().out
    assert "±" in table and ("limbus" in table or "reflex" in table)
