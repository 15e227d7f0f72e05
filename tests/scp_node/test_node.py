"""End to end against real peers: DCMTK storescu (modality) -> digimask serve -> Orthanc (PACS)."""
from __future__ import annotations

import io
import signal
import subprocess
import time
from pathlib import Path

import dicom_factory as f
import numpy as np
import pydicom
import pytest
from databases import database
from digimask.config.settings import load
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.storage.models import Send, State
from digimask.storage.store import open_store
from peers import (
    PEER_ENV,
    NodeProcess,
    Orthanc,
    dciodvfy_errors,
    free_port,
    node_config,
    require,
    storescu,
    wait_for,
)
from skimage import data as skdata

pytestmark = pytest.mark.peers


@pytest.fixture(autouse=True)
def _peers() -> None:
    require("storescu", "echoscu", "Orthanc", "dciodvfy")


@pytest.fixture(scope="module")
def sample(astronaut, grace_hopper, tmp_path_factory) -> list[Path]:
    """OP 8-bit and VL JPEG instances of two faces and one non-face photograph."""
    images = {"astronaut": astronaut, "grace_hopper": grace_hopper, "coffee": skdata.coffee()}
    return f.write_set(tmp_path_factory.mktemp("modality"), images)



def start_node(tmp_path: Path, orthanc: Orthanc, **kw) -> NodeProcess:  # type: ignore[no-untyped-def]
    port = free_port()
    return NodeProcess(node_config(tmp_path / "node", port, {"ORTHANC": orthanc.dicom_port}, **kw), port).start()


def arrived(orthanc: Orthanc) -> dict[str, pydicom.Dataset]:
    """Every instance Orthanc holds, read back over its REST API, by SOP Instance UID."""
    out = {}
    for oid in orthanc.instances():
        ds = pydicom.dcmread(io.BytesIO(orthanc.file(oid)))
        out[str(ds.SOPInstanceUID)] = ds
    return out


def wait_arrivals(orthanc: Orthanc, n: int, timeout: float = 120) -> dict[str, pydicom.Dataset]:
    wait_for(lambda: len(orthanc.instances()) >= n, timeout, f"{n} instances in Orthanc")
    return arrived(orthanc)


def pseudonymizer(node: NodeProcess) -> Pseudonymizer:
    return Pseudonymizer(load(node.config).deid.key())


@pytest.fixture(scope="module")
def jpeg2000(astronaut, tmp_path_factory) -> dict[str, Path]:
    """OP 8-bit JPEG 2000 files, lossless and lossy, keyed by the storescu option that proposes each."""
    folder = tmp_path_factory.mktemp("j2k")
    return {
        "-xv": f.save(f.op8_jpeg2000("j2k lossless", astronaut, 7, lossless=True), folder / "lossless.dcm"),
        "-xw": f.save(f.op8_jpeg2000("j2k lossy", astronaut, 8, lossless=False), folder / "lossy.dcm"),
    }


def test_store_deidentify_mask_and_forward(sample, jpeg2000, orthanc, tmp_path) -> None:
    node = start_node(tmp_path, orthanc)
    sent = [*sample, *jpeg2000.values()]
    try:
        result = storescu(node.port, sample)
        assert result.returncode == 0, result.stderr
        for option, path in jpeg2000.items():  # one JPEG 2000 syntax proposed per association
            result = storescu(node.port, [path], extra=[option])
            assert result.returncode == 0, result.stderr
        got = wait_arrivals(orthanc, len(sent))
    finally:
        node.kill(signal.SIGTERM)
    pseudo = pseudonymizer(node)
    assert len(got) == len(sent)
    for path in sent:
        original = pydicom.dcmread(path)
        out = got[pseudo.derived_uid(original.SOPInstanceUID)]
        text = "\n".join(str(e.value) for e in out.iterall() if e.VR not in ("OB", "OW", "SQ"))
        for value in f.phi_values(original):
            assert value not in text, f"{value!r} from {path.name} reached the PACS"
        assert not any(e.tag.is_private and e.tag.group == 0x0029 for e in out.iterall())
        assert out.StudyInstanceUID == pseudo.uid(original.StudyInstanceUID)
        assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == pseudo.uid(original.SOPInstanceUID)
        assert (out.PatientIdentityRemoved, out.BurnedInAnnotation, out.RecognizableVisualFeatures) == ("YES", "NO", "NO")
        assert {"113100", "113101", "113102", "113107", "113108"} <= {c.CodeValue for c in out.DeidentificationMethodCodeSequence}
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
        assert not np.array_equal(out.pixel_array, original.pixel_array)
        target = tmp_path / f"out-{path.name}"
        out.save_as(target, enforce_file_format=True)
        assert dciodvfy_errors(target) == [], path.name
    # the two instances of one patient share one pseudonymous patient and study
    a, b = (got[pseudo.derived_uid(pydicom.dcmread(p).SOPInstanceUID)] for p in sample[:2])
    assert a.PatientID == b.PatientID or pydicom.dcmread(sample[0]).PatientID != pydicom.dcmread(sample[1]).PatientID


def test_pacs_down_then_back(sample, orthanc, tmp_path) -> None:
    """The sender probes a PACS that is down with C-ECHO and sends the whole backlog once it answers,
    without waiting out the deliveries' backoff (here 5 minutes)."""
    orthanc.stop()
    port = free_port()
    config = node_config(tmp_path / "node", port, {"ORTHANC": orthanc.dicom_port})
    config.write_text(config.read_text().replace("initial_delay_s = 0.5", "initial_delay_s = 300\nprobe_interval_s = 1")
                      .replace("max_delay_s = 2", "max_delay_s = 600"))
    node = NodeProcess(config, port).start()
    try:
        assert storescu(node.port, sample[:3]).returncode == 0
        store = open_store(load(node.config))
        wait_for(lambda: sum(d.attempts for d in store.deliveries(Send.PENDING)) >= 3, 60, "a failed attempt each")
        assert store.counts().get("queued") == 3  # waiting, nothing lost, nothing dropped
        orthanc.start()
        back = time.monotonic()
        wait_arrivals(orthanc, 3, timeout=30)
        assert time.monotonic() - back < 15  # the probe's interval and one batch, not the 300 s backoff
        wait_for(lambda: store.counts() == {"done": 3}, 30, "deliveries confirmed")
    finally:
        node.kill(signal.SIGTERM)
    assert "destination ORTHANC answers C-ECHO again: sending its backlog of 3 now" in node.log()


def test_sigkill_mid_batch_loses_nothing(orthanc, astronaut, tmp_path) -> None:
    files = [f.save(f.op8(f"kill-{i}", astronaut[::2, ::2], i), tmp_path / f"k{i}.dcm") for i in range(150)]
    node = start_node(tmp_path, orthanc)
    sender = subprocess.Popen(["/usr/bin/storescu", "-v", "-aet", "STORESCU", "-aec", "DIGIMASK", "127.0.0.1", str(node.port),
                               *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=PEER_ENV)
    store = open_store(load(node.config))
    wait_for(lambda: sum(store.counts().values()) >= 10, 60, "10 instances received")
    node.kill(signal.SIGKILL)
    log, _ = sender.communicate(timeout=60)
    accepted = log.count("Received Store Response (Success)")
    assert 10 <= accepted < len(files), log[-500:]
    node.start()  # same configuration, data folder and database
    try:
        got = wait_arrivals(orthanc, accepted, timeout=120)
        pseudo = pseudonymizer(node)
        for path in files[:accepted]:  # storescu sends in order: the first `accepted` were acknowledged
            assert pseudo.derived_uid(pydicom.dcmread(path).SOPInstanceUID) in got
        assert "resuming" in node.log() or store.counts().get("received", 0) == 0
    finally:
        node.kill(signal.SIGTERM)


def send_raw(port: int, path: Path) -> int:
    """C-STORE a file's bytes as they are (pynetdicom's chunked send: the dataset is not decoded or
    re-encoded, so a truncated file goes out truncated, which DCMTK's storescu refuses to do)."""
    from pynetdicom import AE, _config

    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="DIGIMASK")
    assert assoc.is_established
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()


def test_bad_input_gets_an_honest_status_or_quarantine_and_the_node_keeps_serving(orthanc, astronaut, tmp_path) -> None:
    bad = f.bad_inputs(tmp_path / "bad", astronaut[:64, :64])
    cut_header = tmp_path / "bad" / "cut_header.dcm"  # ends inside an early attribute
    cut_header.write_bytes(f.save(f.op8("cut", astronaut[:64, :64]), tmp_path / "whole.dcm").read_bytes()[:700])
    no_uid = f.op8("no-uid", astronaut[:64, :64])
    del no_uid.SOPInstanceUID
    no_uid_path = f.save(no_uid, tmp_path / "bad" / "no_uid.dcm")
    node = start_node(tmp_path, orthanc)
    try:
        for name in ("no_pixel_data", "pixel_length_mismatch"):  # never usable: the modality must not resend
            refused = storescu(node.port, [bad[name]], extra=["-v"])
            assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in refused.stdout + refused.stderr, name
        assert send_raw(node.port, bad["truncated"]) == 0xC210  # Cannot understand
        assert send_raw(node.port, cut_header) == 0xC210
        assert send_raw(node.port, no_uid_path) == 0xC210  # no SOP Instance UID in the data set (as pynetdicom's storescp)
        wrong = storescu(node.port, [bad["wrong_sop_class"]])
        assert wrong.returncode != 0  # CT is not an accepted presentation context
        assert storescu(node.port, [bad["ten_thousand_rows"]]).returncode == 0  # odd but usable: kept
        intruder = storescu(node.port, [f.save(f.op8("x", astronaut), tmp_path / "x.dcm")], aet="INTRUDER")
        assert intruder.returncode != 0 and "Calling AE Title Not Recognized" in intruder.stderr + intruder.stdout
        store = open_store(load(node.config))
        wait_for(lambda: store.counts().get("received", 0) + store.counts().get("processing", 0) == 0
                 and sum(store.counts().values()) > 0, 60, "the pipeline to settle")
        assert sum(store.counts().values()) == 1  # the refused ones were never recorded
        good = storescu(node.port, [f.save(f.op8("after", astronaut), tmp_path / "after.dcm")])
        assert good.returncode == 0
        echo = subprocess.run(["/usr/bin/echoscu", "-aet", "ECHOSCU", "-aec", "DIGIMASK", "127.0.0.1", str(node.port)],
                              env=PEER_ENV)
        assert echo.returncode == 0
        wait_for(lambda: store.counts().get("done", 0) == 2, 60, "the usable instances forwarded")
    finally:
        node.kill(signal.SIGTERM)
    log = node.log()
    assert "Traceback" not in log
    assert log.count("(0xA900)") == 2 and log.count("(0xC210)") == 3
    assert "refused association from INTRUDER at 127.0.0.1:" in log  # at the default level
    assert not list((tmp_path / "node" / "data" / "inbox").iterdir())  # nothing refused was kept


def test_two_nodes_share_postgresql_without_double_forwarding(sample, orthanc, tmp_path) -> None:
    with database("postgresql", tmp_path) as url:
        shared = tmp_path / "shared"
        nodes = []
        for name in ("a", "b"):
            port = free_port()
            config = node_config(tmp_path / name, port, {"ORTHANC": orthanc.dicom_port}, database_url=url, node_id=name)
            # one data folder and one key for both nodes, as a scale-out deployment shares them
            config.write_text(config.read_text().replace('data_dir = "data"', f'data_dir = "{shared}"')
                              .replace('secret_file = "secret.key"', f'secret_file = "{shared}/secret.key"'))
            nodes.append(NodeProcess(config, port).start())
        try:
            for node in nodes:  # the modality sends the same study to both nodes
                assert storescu(node.port, sample).returncode == 0
            got = wait_arrivals(orthanc, len(sample))
            assert len(got) == len(sample)  # same input -> same UIDs on both nodes
            store = open_store(load(nodes[0].config))
            wait_for(lambda: store.counts() == {"done": 2 * len(sample)}, 60, "all deliveries confirmed")
            deliveries = store.deliveries(limit=1000)
            assert len(deliveries) == 2 * len(sample)
            assert all(d.attempts == 1 for d in deliveries)  # each queue entry was sent once
            processed_by = {e.node_id for i in store.instances(limit=100) for e in store.instance(i.id)[1]
                            if e.state == "deidentified+masked"}
            assert processed_by <= {"a", "b"}
        finally:
            for node in nodes:
                node.kill(signal.SIGTERM)


def test_digital_mask_through_the_node(orthanc, astronaut, tmp_path) -> None:
    """The default masker end to end: the avatar reaches the PACS with its parameters; a photo without a
    face is quarantined, never forwarded."""
    from digimask.pipeline.dicom import private_block
    from digimask.pipeline.mask.digital_mask import render_params

    face = f.save(f.op8("dm-face", astronaut), tmp_path / "face.dcm")
    no_face = f.save(f.op8("dm-coffee", skdata.coffee()), tmp_path / "coffee.dcm")
    node = start_node(tmp_path, orthanc, masker="digital_mask")
    try:
        assert storescu(node.port, [face, no_face]).returncode == 0
        (out,) = wait_arrivals(orthanc, 1, timeout=180).values()
        store = open_store(load(node.config))
        wait_for(lambda: store.counts() == {"done": 1, "quarantined": 1}, 60, "one forwarded, one quarantined")
    finally:
        node.kill(signal.SIGTERM)
    (quarantined,) = store.instances(State.QUARANTINED)
    assert "no face" in quarantined.reason
    schema, masker, params = private_block.read(out)
    assert masker == "digital_mask" and schema == params["schema"]
    assert np.array_equal(render_params(params), out.pixel_array)  # the block alone re-creates the image
    assert out.RecognizableVisualFeatures == "NO"
    target = tmp_path / "dm.dcm"
    out.save_as(target, enforce_file_format=True)
    assert dciodvfy_errors(target) == []
    assert len(orthanc.instances()) == 1  # the coffee photo never left


def test_out_of_resources_when_the_instance_cannot_be_kept(orthanc, astronaut, tmp_path) -> None:
    """If the bytes cannot be made durable, the modality is told Out of Resources (0xA700) and keeps them."""
    node = start_node(tmp_path, orthanc)
    inbox = tmp_path / "node" / "data" / "inbox"
    image = f.save(f.op8("oor", astronaut), tmp_path / "oor.dcm")
    try:
        inbox.rmdir()
        inbox.write_text("not a folder")  # writes into it now fail, even for root
        refused = storescu(node.port, [image], extra=["-v"])
        assert refused.returncode != 0 and "Refused: OutOfResources" in refused.stdout + refused.stderr
        inbox.unlink()
        inbox.mkdir(mode=0o700)
        assert storescu(node.port, [image]).returncode == 0  # the modality's retry succeeds
        wait_arrivals(orthanc, 1, timeout=60)
    finally:
        node.kill(signal.SIGTERM)
    assert "could not store an instance from STORESCU (" in node.log() and "replied Out of Resources" in node.log()
