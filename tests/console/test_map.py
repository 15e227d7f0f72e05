"""The pseudonym map without a node: the lookup in the de-identification, the import's refusals (which
never quote a value), encryption at rest, the console's secret hiding."""
from __future__ import annotations

import dicom_factory as f
import pytest
from cryptography.fernet import InvalidToken
from digimask.config.settings import DeidOption
from digimask.pipeline.deid.deidentify import Deidentifier
from digimask.pipeline.deid.pseudonym import Pseudonymizer, Subject, SubjectLookup
from digimask.scp_node.console.context import hide_password
from digimask.storage import db
from digimask.storage.lookup import LookupImportError, PseudonymMap
from digimask.storage.models import PseudonymEntry
from sqlalchemy import select

KEY = b"k" * 32


@pytest.fixture
def pmap(tmp_path) -> PseudonymMap:
    return PseudonymMap(db.init(db.make_engine(f"sqlite:///{tmp_path / 'map.db'}")), KEY)


def test_lookup_before_the_keyed_default(astronaut) -> None:
    ds = f.op8("mapped", astronaut[::8, ::8].copy())
    lookup = SubjectLookup({ds.PatientID: Subject("TRIAL-1", "SUBJECT^ONE")})
    deid = Deidentifier([DeidOption.clean_descriptors], Pseudonymizer(KEY, lookup=lookup))
    out = deid(ds).dataset
    assert (out.PatientID, str(out.PatientName)) == ("TRIAL-1", "SUBJECT^ONE")
    lookup.replace({})  # the node reloads an emptied table: the keyed default again, unchanged
    keyed = deid(ds).dataset
    assert keyed.PatientID == Pseudonymizer(KEY).patient_id(ds.PatientID) and str(keyed.PatientName) == f"ANONYMOUS^{keyed.PatientID}"
    lookup.replace({ds.PatientID: Subject("TRIAL-2", "")})  # no name given: the anonymous name of the subject ID
    assert str(deid(ds).dataset.PatientName) == "ANONYMOUS^TRIAL-2"


def test_import_refusals_name_lines_never_values(pmap) -> None:
    bad = ("original_patient_id,subject_id,subject_name\nMRN0000001,S-1,A^B\nMRN0000002,,\nMRN0000001,S-3,\n"
           "MRN0000004,S-1,\nMRN0000005,BAD\\ID,\n")
    with pytest.raises(LookupImportError) as err:
        pmap.import_csv(bad)
    assert err.value.problems == [
        "line 3: subject_id is empty",
        "line 4: the same original_patient_id as an earlier line",
        "line 5: subject_id also given on line 2 (two patients would merge)",
        "line 6: subject_id is not a valid DICOM value (1-64 characters, no backslash)",
    ]
    assert "MRN" not in str(err.value)
    assert pmap.subjects() == {}  # all or nothing
    with pytest.raises(LookupImportError, match="line 1: the header must start with original_patient_id,subject_id"):
        pmap.import_csv("patient,subject\nA,B\n")


def test_import_update_and_encryption_at_rest(pmap) -> None:
    assert pmap.record_seen("patient", "MRN0000009", "DM-AAAA")
    assert not pmap.record_seen("patient", "MRN0000009", "DM-AAAA")  # known already
    done = pmap.import_csv("original_patient_id,subject_id\nMRN0000009,S-9\nMRN0000010,S-10\n")
    assert (done.added, done.updated, done.previously_seen) == (1, 1, 1)
    assert pmap.subjects() == {"MRN0000009": ("S-9", ""), "MRN0000010": ("S-10", "")}
    with pmap.sessions() as s:
        stored = " ".join(f"{e.index_hash} {e.original_enc}" for e in s.scalars(select(PseudonymEntry)))
    assert "MRN0000009" not in stored and "MRN0000010" not in stored
    with pytest.raises(InvalidToken):  # another key cannot read the originals
        PseudonymMap(pmap.sessions, b"x" * 32).subjects()


def test_hide_password() -> None:
    assert hide_password("postgresql://digimask:pw@db.example/digimask") == "postgresql://digimask:(hidden)@db.example/digimask"
    assert hide_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert hide_password("") == ""


def test_mask_parameters_read_from_the_held_output(astronaut, tmp_path) -> None:
    """The instance page's mask parameters are the output's DIGIMASK block, as the encoder wrote it."""
    import io

    from digimask.config.settings import parse
    from digimask.pipeline.dicom import private_block
    from digimask.scp_node.console import ops
    from digimask.scp_node.console.context import ConsoleContext
    from digimask.storage.store import open_store

    settings = parse({"node": {"allowed_calling_aes": ["STORESCU"]}, "deid": {"secret": "k"},
                      "storage": {"data_dir": "data"}}, tmp_path)
    store = open_store(settings)
    out = f.op8("params", astronaut[::8, ::8].copy())
    params = {"schema": "digimask.params/2", "head": {"yaw_deg": 3.5}, "eyes": {"right": {"gaze_yaw_deg": -1.25}}}
    private_block.write(out, params["schema"], "digital_mask", params)
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    store.receive(b"original", "2.25.7", out.SOPClassUID, "STORESCU", "DIGIMASK")
    claim = store.claim_instance(60)
    assert store.processed(claim, buf.getvalue(), ["PACS"], pseudo_uid="2.25.7", sop_class_uid=out.SOPClassUID,
                           pseudo_patient_id="DM-X")
    c = ConsoleContext(settings, store)
    assert ops.mask_params(c, claim.id) == {"schema": "digimask.params/2", "masker": "digital_mask", "params": params}
    store.receive(b"original", "2.25.8", out.SOPClassUID, "STORESCU", "DIGIMASK")
    assert ops.mask_params(c, claim.id + 1) is None  # not masked yet
