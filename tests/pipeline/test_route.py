"""Routing rules: AE titles, SOP class, modality and tag conditions; union of matching rules."""
from __future__ import annotations

from digimask.config.settings import parse
from digimask.pipeline.route import Router
from pydicom.dataset import Dataset


def router(*routes) -> Router:  # type: ignore[no-untyped-def]
    names = sorted({d for r in routes for d in r["destinations"]})
    s = parse({"node": {"allowed_calling_aes": ["CAM"]}, "deid": {"secret": "k"},
               "destinations": [{"name": n, "ae_title": n, "host": "127.0.0.1", "port": 104} for n in names],
               "routes": list(routes)})
    return Router(s.routes)


def ds(**kw) -> Dataset:  # type: ignore[no-untyped-def]
    d = Dataset()
    d.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
    d.Modality = "OP"
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def test_conditions_and_union() -> None:
    r = router(
        {"name": "eye-clinic", "match": {"calling_ae": "EYECAM.*", "modality": ["OP"]}, "destinations": ["PACS"]},
        {"name": "research", "match": {"tags": [{"tag": "StudyDescription", "regex": ".*trial.*"}]}, "destinations": ["RESEARCH", "PACS"]},
        {"name": "by-tag-number", "match": {"tags": [{"tag": "0008,0080", "equals": "North"}]}, "destinations": ["NORTH"]},
        {"name": "needs-accession", "match": {"called_ae": "DIGIMASK", "tags": [{"tag": "AccessionNumber", "present": True}]},
         "destinations": ["RIS"]},
    )
    assert r.destinations(ds(), "EYECAM01", "DIGIMASK") == ["PACS"]
    assert r.destinations(ds(), "OTHER", "DIGIMASK") == []
    assert r.destinations(ds(StudyDescription="the trial visit"), "EYECAM01", "X") == ["PACS", "RESEARCH"]
    assert r.destinations(ds(InstitutionName="North"), "X", "X") == ["NORTH"]
    assert r.destinations(ds(AccessionNumber="A1"), "X", "DIGIMASK") == ["RIS"]
    assert r.destinations(ds(AccessionNumber=""), "X", "DIGIMASK") == []  # empty counts as absent


def test_sop_class_filter() -> None:
    r = router({"name": "vl-only", "match": {"sop_class_uid": ["1.2.840.10008.5.1.4.1.1.77.1.4"]}, "destinations": ["P"]})
    assert r.destinations(ds(), "CAM", "DM") == []
    assert r.destinations(ds(SOPClassUID="1.2.840.10008.5.1.4.1.1.77.1.4"), "CAM", "DM") == ["P"]
