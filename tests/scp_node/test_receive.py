"""The SCP's handlers as a modality meets them: called AE titles, refused associations, logs without PHI."""
from __future__ import annotations

import signal
import subprocess
import sys

import dicom_factory as f
import pytest
from digimask.config.settings import load
from digimask.storage.store import open_store
from peers import (
    PEER_ENV,
    NodeProcess,
    free_port,
    node_config,
    require,
    storescu,
    wait_for,
    wait_port,
)
from sqlalchemy import text

pytestmark = pytest.mark.peers



class VerboseNode(NodeProcess):
    """``digimask -v serve``: the most verbose the node gets."""

    def start(self) -> "VerboseNode":
        log = open(self.config.parent / "node.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "digimask", "-v", "serve", "--config", str(self.config)],
                                     stdout=log, stderr=log)
        wait_port(self.port, 60)
        return self


def test_called_ae_titles_are_checked_recorded_and_routed_on(orthanc, astronaut, tmp_path) -> None:
    port = free_port()
    config = node_config(tmp_path / "node", port, {"MAIN": orthanc.dicom_port, "RESEARCH": orthanc.dicom_port})
    routes = ('[[routes]]\nname = "research"\nmatch = { called_ae = "DIGIMASK_RES" }\ndestinations = ["RESEARCH"]\n\n'
              '[[routes]]\nname = "main"\nmatch = { called_ae = "DIGIMASK" }\ndestinations = ["MAIN"]\n')
    text_ = config.read_text()
    config.write_text(text_[:text_.index("[[routes]]")].replace("[node]\n", '[node]\nother_ae_titles = ["DIGIMASK_RES"]\n', 1)
                      + routes)
    node = NodeProcess(config, port).start()
    main, research = (f.save(f.op8(n, astronaut[:64, :64]), tmp_path / f"{n}.dcm") for n in ("main", "research"))
    try:
        assert storescu(port, [main]).returncode == 0
        cmd = ["/usr/bin/storescu", "-aet", "STORESCU", "127.0.0.1", str(port)]
        assert subprocess.run([*cmd[:3], "-aec", "DIGIMASK_RES", *cmd[3:], str(research)], env=PEER_ENV).returncode == 0
        wrong = subprocess.run([*cmd[:3], "-aec", "ANYBODY", *cmd[3:], str(research)], capture_output=True, text=True, env=PEER_ENV)
        assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stdout + wrong.stderr
        store = open_store(load(config))
        wait_for(lambda: store.counts() == {"done": 2}, 60, "both routed and delivered")
    finally:
        node.kill(signal.SIGTERM)
    routed = {store.instance(i.id)[0].called_ae: [d.destination for d in store.instance(i.id)[2]] for i in store.instances()}
    assert routed == {"DIGIMASK": ["MAIN"], "DIGIMASK_RES": ["RESEARCH"]}
    assert "refused association from STORESCU at 127.0.0.1:" in node.log()
    assert "calling ANYBODY: called AE title not one of the node's" in node.log()


def test_no_phi_in_logs_or_database_at_any_verbosity(orthanc, astronaut, tmp_path) -> None:
    """``digimask -v serve``, good and malformed instances, a refused one: neither the log nor any text
    column of the database holds a name, an ID, a date of the patient or an original UID."""
    port = free_port()
    node = VerboseNode(node_config(tmp_path / "node", port, {"ORTHANC": orthanc.dicom_port}), port).start()
    good = f.op8("logs", astronaut[:64, :64])
    malformed = f.op8("logs-bad", astronaut[:64, :64], 2)
    malformed.PatientAge = str(malformed.PatientName)  # an invalid AS value quoting the name: pydicom warns with it
    malformed.add_new(0x0008C830, "LO", str(malformed.PatientName))  # unknown tag with PHI: removed, audited by tag
    no_pixels = f.op8("logs-refused", astronaut[:64, :64], 3)
    del no_pixels.PixelData
    files = [f.save(ds, tmp_path / f"{i}.dcm") for i, ds in enumerate((good, malformed, no_pixels))]
    try:
        storescu(port, files)
        store = open_store(load(node.config))
        wait_for(lambda: store.counts().get("done", 0) == 2, 60, "two delivered")
    finally:
        node.kill(signal.SIGTERM)
    log = node.log()
    assert "DEBUG" in log or "INFO" in log
    assert "received instance" in log and "refused instance" in log
    phi = {v for ds in (good, malformed, no_pixels) for v in f.phi_values(ds)}
    phi |= {str(ds.file_meta.MediaStorageSOPInstanceUID) for ds in (good, malformed, no_pixels)}
    with store.sessions() as s:
        rows = [str(v) for table in ("storage_instance", "storage_delivery", "storage_event")
                for row in s.execute(text(f"SELECT * FROM {table}")).all() for v in row if v is not None]
    stored = "\n".join(rows)
    for value in phi:
        assert value not in log, f"{value!r} in the log"
        assert value not in stored, f"{value!r} in the database"
    # the audit names the dropped tags, never their values: the unknown tag, and the invalid Patient's Age
    assert "removed=2: 0008C830 00101010" in stored


def test_associations_past_the_limit_are_refused_and_logged(tmp_path) -> None:
    require("echoscu")
    from pynetdicom import AE

    port = free_port()
    config = node_config(tmp_path / "node", port, {"PACS": free_port()})
    config.write_text(config.read_text().replace("[node]\n", "[node]\nmax_associations = 3\n", 1))
    node = NodeProcess(config, port).start()
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    held = []
    try:
        for _ in range(5):  # up to the limit (the start-up port probe may hold a slot for a while)
            assoc = ae.associate("127.0.0.1", port, ae_title="DIGIMASK")
            if not assoc.is_established:
                break
            held.append(assoc)
        assert 1 <= len(held) <= 3
        second = subprocess.run(["/usr/bin/echoscu", "-aet", "ECHOSCU", "-aec", "DIGIMASK", "127.0.0.1", str(port)],
                                capture_output=True, text=True, env=PEER_ENV, timeout=60)
    finally:
        for assoc in held:
            assoc.release()
        node.kill(signal.SIGTERM)
    assert second.returncode != 0 and "Local Limit Exceeded" in second.stdout + second.stderr
    assert "refused association from ECHOSCU at 127.0.0.1:" in node.log()
    assert "calling DIGIMASK: local limit of associations exceeded" in node.log()
