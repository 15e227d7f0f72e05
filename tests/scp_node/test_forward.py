"""The Storage SCU against a real Orthanc: which refusals fail a delivery at once, which are retried."""
from __future__ import annotations

import io
from pathlib import Path

import dicom_factory as f
import pytest
from digimask.config.settings import load
from digimask.pipeline.mask.maskers import BlankMasker
from digimask.pipeline.process import Processor
from digimask.scp_node.forward import echo, keep_responses, send_batch, settle
from digimask.storage.models import Send
from digimask.storage.store import open_store
from peers import free_port, node_config

pytestmark = pytest.mark.peers



def queue_outputs(config: Path, astronaut, valid: int, invalid: int):  # type: ignore[no-untyped-def]
    """Masked outputs in the store's queue; the invalid ones lack their Study Instance UID (Orthanc: 0xA700)."""
    settings = load(config)
    store, processor = open_store(settings), Processor(settings, BlankMasker())
    for i in range(valid + invalid):
        out = processor.process(f.op8(f"fwd-{i}", astronaut[:64, :64], i), route=False).dataset
        if i >= valid:
            del out.StudyInstanceUID
        buf = io.BytesIO()
        out.save_as(buf, enforce_file_format=True)
        store.receive(b"original", str(out.SOPInstanceUID), str(out.SOPClassUID), "STORESCU", "DIGIMASK")
        store.processed(store.claim_instance(60), buf.getvalue(), ["ORTHANC"], pseudo_uid=str(out.SOPInstanceUID),
                        sop_class_uid=str(out.SOPClassUID), pseudo_patient_id="DM-X")
    return settings, store


def send_all(settings, store) -> None:  # type: ignore[no-untyped-def]
    dest = settings.destination("ORTHANC")
    for outcome in send_batch(settings.node, dest, store.claim_deliveries("ORTHANC", 50, 60)):
        settle(store, settings, dest, outcome)


def test_an_instance_the_pacs_refuses_fails_at_once(orthanc, astronaut, tmp_path) -> None:
    config = node_config(tmp_path / "node", free_port(), {"ORTHANC": orthanc.dicom_port})
    settings, store = queue_outputs(config, astronaut, valid=2, invalid=1)
    send_all(settings, store)
    by_state = {d.state: d for d in store.deliveries()}
    assert sorted(d.state for d in store.deliveries()) == [Send.DONE, Send.DONE, Send.FAILED]
    assert by_state[Send.FAILED].last_error == "refused: status 0xA700" and by_state[Send.FAILED].attempts == 1
    assert store.counts() == {"done": 2, "failed": 1}
    assert len(orthanc.instances()) == 2


def test_out_of_resources_for_everything_is_retried(orthanc, astronaut, tmp_path) -> None:
    """0xA700 for every instance of an association may be the PACS's own disk: retry, with backoff."""
    config = node_config(tmp_path / "node", free_port(), {"ORTHANC": orthanc.dicom_port})
    settings, store = queue_outputs(config, astronaut, valid=0, invalid=1)
    send_all(settings, store)
    (d,) = store.deliveries()
    assert d.state == Send.PENDING and d.last_error == "refused: status 0xA700 (for every instance)"


def test_echo_tells_up_from_down(orthanc, tmp_path) -> None:
    config = node_config(tmp_path / "node", free_port(), {"ORTHANC": orthanc.dicom_port, "NOBODY": free_port()})
    settings = load(config)
    assert echo(settings.node, settings.destination("ORTHANC"))
    assert not echo(settings.node, settings.destination("NOBODY"))


def test_a_response_the_reactor_takes_goes_back_to_the_waiting_request(orthanc) -> None:
    """pynetdicom's requestor reactor can take a C-STORE/C-ECHO response off the DIMSE queue in the instant
    after a send paused it (it dropped it, and the send waited 60 s for the DIMSE timeout; 5 of 12 benchmark
    runs stalled so). With ``keep_responses``, a response the reactor is handed while a send is under way is
    back on the queue for that send; with no send under way it is left to pynetdicom (dropped, as before)."""
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_ECHO

    ae = AE(ae_title="DIGIMASK")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title="ORTHANC")
    assert assoc.is_established
    try:
        keep_responses(assoc)
        rsp = C_ECHO()
        rsp.MessageIDBeingRespondedTo, rsp.Status = 7, 0x0000
        assert rsp.is_valid_response
        assoc._reactor_checkpoint.clear()  # a send under way: as send_c_echo leaves it while it waits
        assoc._serve_request(rsp, 1)  # what the reactor does with a message it took
        assert assoc.dimse.get_msg(block=True) == (1, rsp)
        assoc._reactor_checkpoint.set()
        assoc._serve_request(rsp, 1)  # no send waiting: pynetdicom's own handling, nothing queued
        assert assoc.dimse.get_msg(block=False) == (None, None)
        assert assoc.send_c_echo().Status == 0x0000  # the association still works after both
    finally:
        assoc.release()
