"""The report files written by ``evaluate``."""
from __future__ import annotations

import json

from PIL import Image


def test_report_has_tables_and_pictures(evaluated, masker_specs):
    out, _ = evaluated
    report = (out / "report.md").read_text()
    for spec in masker_specs:
        assert f"| {spec} |" in report
    assert "| original | " + " | ".join(["100.0% [61.0%–100.0%] (50.0%)"] * 7) + " |" in report
    assert "| original | 100.0% (0.0%) | 1.000 | 100.0% (0.0%) | 1.000 | 100.0% | 0/6 | " in report
    assert "![ROC curves](roc.png)" in report and "contact_sheet.png" in report
    for name in ("roc.png", "contact_sheet.png"):
        with Image.open(out / name) as img:
            assert img.width > 300 and img.height > 150


def test_contact_sheet_has_a_row_per_identity_and_a_column_per_masker(evaluated, masker_specs):
    with Image.open(evaluated[0] / "contact_sheet.png") as img:
        assert img.width == 160 * (1 + len(masker_specs))
        assert img.height == 18 + 160 * 2


def test_results_json_is_strict_json(evaluated):
    text = (evaluated[0] / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN/Infinity
    assert "meta" in json.loads(text) and json.loads(text)["meta"]["date"]


def test_summary_table_has_a_row_per_masker(evaluated, masker_specs):
    summary = (evaluated[0] / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0][2:] for row in rows] == masker_specs
    original = rows[0].split(" | ")
    assert original[1] == "100.0% (50.0%)" and original[-1] == "0/6 |"
    assert "commit" in summary


def test_without_fidelity_the_report_says_so(evaluated, run_command, tmp_path):
    corpus = evaluated[0].parent / "corpus"
    argv = ["evaluate", str(corpus), "-o", str(tmp_path), "--no-progress", "--no-fidelity", "--maskers", "original"]
    assert run_command(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    original = results["maskers"]["original"]
    assert original["fidelity"] is None and original["measurements"] == {}
    assert original["rank1_mask_to_original"] == 1.0 and original["n_failed"] == 0
    assert "Not measured" in (tmp_path / "report.md").read_text()
    assert not list(tmp_path.glob("bland_altman_*.png"))
