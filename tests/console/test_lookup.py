"""Pre-assigned subject IDs: a CSV-mapped patient arrives in Orthanc with the mapped ID and name (DCMTK
storescu -> node -> Orthanc REST), the same patient's later study gets the same one; the export decrypts
to the map with the key and is useless without it; looking up a pseudonym is for the privacy role, audited."""
from __future__ import annotations

import csv
import io

import dicom_factory as f
import pydicom
import pytest
from console.support import add_user, console_config, phi_of
from cryptography.fernet import Fernet, InvalidToken
from databases import database
from digimask.config.settings import load
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.storage.lookup import decrypt_export
from digimask.storage.store import open_store
from peers import Orthanc, storescu, wait_for
from sqlalchemy import text

from digimask.cli import main

pytestmark = pytest.mark.peers


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_lookup_import_use_export_and_show(kind, small_face, start_console, tmp_path, monkeypatch, capsys) -> None:
    mapped = [f.op8("lookup patient", small_face, 1), f.op8("lookup patient", small_face, 2)]  # two studies
    other = f.op8("unlisted patient", small_face, 3)
    assert mapped[0].PatientID == mapped[1].PatientID and mapped[0].StudyInstanceUID != mapped[1].StudyInstanceUID
    paths = [f.save(ds, tmp_path / f"{i}.dcm") for i, ds in enumerate([*mapped, other])]
    with database(kind, tmp_path) as url:
        orthanc = Orthanc(tmp_path / "orthanc").start()
        try:
            _run(url, mapped, other, paths, orthanc, start_console, tmp_path, monkeypatch, capsys)
        finally:
            orthanc.stop()


def _run(url, mapped, other, paths, orthanc, start_console, tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The scenario on one database."""
    config, port, cport = console_config(tmp_path / "node", orthanc.dicom_port, database_url=url)
    table = tmp_path / "subjects.csv"
    table.write_text(f"original_patient_id,subject_id,subject_name\n{mapped[0].PatientID},TRIAL-007,SUBJECT^SEVEN\n"
                     "MRN-NOT-SEEN,TRIAL-008,\n")
    assert main(["lookup", "import", str(table), "--config", str(config)]) == 0
    assert "2 added" in capsys.readouterr().out
    clash = tmp_path / "clash.csv"
    clash.write_text("original_patient_id,subject_id\nMRN-OTHER,TRIAL-007\n")
    assert main(["lookup", "import", str(clash), "--config", str(config)]) == 1  # would merge two patients
    assert "line 2: subject_id already assigned to another patient" in capsys.readouterr().err
    add_user(config, "pia", "privacy", monkeypatch, capsys)
    add_user(config, "otto", "operator", monkeypatch, capsys)
    console = start_console(config, port, cport)

    assert storescu(port, paths[:1]).returncode == 0  # the first study, then the later one
    wait_for(lambda: len(orthanc.instances()) == 1, 90, "the first study in Orthanc")
    assert storescu(port, paths[1:]).returncode == 0
    wait_for(lambda: len(orthanc.instances()) == 3, 60, "all three instances in Orthanc")
    got = {str(ds.StudyInstanceUID): ds for ds in (pydicom.dcmread(io.BytesIO(orthanc.file(o))) for o in orthanc.instances())}
    pseudo = Pseudonymizer(load(config).deid.key())
    first, later, unlisted = (got[pseudo.uid(ds.StudyInstanceUID)] for ds in (*mapped, other))
    assert (first.PatientID, str(first.PatientName)) == ("TRIAL-007", "SUBJECT^SEVEN")
    assert (later.PatientID, str(later.PatientName)) == ("TRIAL-007", "SUBJECT^SEVEN")
    assert unlisted.PatientID == pseudo.patient_id(other.PatientID) and unlisted.PatientID.startswith("DM-")

    # the privacy officer's export: the map with the key, nothing without it
    key = tmp_path / "officer.key"
    export = tmp_path / "map.fernet"
    assert main(["lookup", "export", str(export), "--key-file", str(key), "--config", str(config)]) == 0
    data = export.read_bytes()
    for value in phi_of(paths):
        assert value.encode() not in data
    with pytest.raises(InvalidToken):
        decrypt_export(data, Fernet.generate_key())
    rows = list(csv.DictReader(io.StringIO(decrypt_export(data, key.read_bytes().strip()))))
    patients = {r["original"]: r for r in rows if r["kind"] == "patient"}
    studies = {r["original"]: r for r in rows if r["kind"] == "study"}
    assert patients[mapped[0].PatientID]["pseudonym"] == "TRIAL-007" and patients[mapped[0].PatientID]["source"] == "lookup"
    assert patients[other.PatientID]["pseudonym"] == unlisted.PatientID and patients[other.PatientID]["source"] == "seen"
    assert patients["MRN-NOT-SEEN"]["pseudonym"] == "TRIAL-008"
    assert {s: studies[s]["pseudonym"] for s in studies} == {
        str(ds.StudyInstanceUID): pseudo.uid(ds.StudyInstanceUID) for ds in (*mapped, other)}
    assert {studies[str(ds.StudyInstanceUID)]["patient_pseudonym"] for ds in mapped} == {"TRIAL-007"}
    # the database itself holds no original in the clear
    with open_store(load(config)).sessions() as s:
        dump = "\n".join(str(row) for table in ("console_pseudonym", "storage_instance", "storage_event", "console_audit")
                         for row in s.execute(text(f"SELECT * FROM {table}")).all())
    assert "TRIAL-007" in dump  # the dump does hold the map's rows ...
    for value in (mapped[0].PatientID, other.PatientID, str(other.StudyInstanceUID)):
        assert value not in dump  # ... but no original

    # one pseudonym's original: privacy role only, and audited
    operator, privacy = console.login("otto"), console.login("pia")
    assert operator.get(f"/api/v1/lookup/{unlisted.PatientID}").status_code == 403
    found = privacy.get(f"/api/v1/lookup/{unlisted.PatientID}").json()
    assert [(r["kind"], r["original"]) for r in found] == [("patient", other.PatientID)]
    assert privacy.get("/api/v1/lookup/DM-0000000000000000").status_code == 404
    audit = [(a["user"], a["action"], a["detail"]) for a in _audit(privacy)]
    assert ("pia", "lookup show", f"{unlisted.PatientID}: 1 found") in audit
    key_text = Fernet.generate_key().decode()
    api_export = privacy.post("/api/v1/lookup/export", json={"key": key_text})
    assert api_export.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(decrypt_export(api_export.content, key_text.encode()))))) == len(rows)
    assert privacy.post("/api/v1/lookup/export", json={"key": "not a key"}).status_code == 422
    console.stop()
    log = console.node.log()
    for value in phi_of(paths):
        assert value not in log
    assert main(["lookup", "show", unlisted.PatientID, "--config", str(config)]) == 0
    assert other.PatientID in capsys.readouterr().out  # the privacy officer's explicit action on the node


def _audit(client):  # type: ignore[no-untyped-def]
    """The console audit trail, as the audit page shows it."""
    page = client.get("/audit")
    assert page.status_code == 200
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class Cells(HTMLParser):
        def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
            if tag == "tr":
                rows.append([])
            elif tag == "td" and rows:
                rows[-1].append("")

        def handle_data(self, data):  # type: ignore[no-untyped-def]
            if rows and rows[-1]:
                rows[-1][-1] += data.strip()

    Cells().feed(page.text)
    return [{"user": r[1], "action": r[3], "detail": r[5]} for r in rows if len(r) == 6]
