"""``node.allowed_ips``: associations from other addresses are closed before any DICOM is exchanged.

Two loopback addresses stand in for two hosts: DCMTK's echoscu connects from 127.0.0.1, and an
association bound to 127.0.0.2 (pynetdicom's ``bind_address``; DCMTK cannot choose its source address)
plays the allowed modality.
"""
from __future__ import annotations

import subprocess

from peers import PEER_ENV, NodeProcess, free_port, node_config, require
from pynetdicom import AE

VERIFICATION = "1.2.840.10008.1.1"


def test_only_listed_addresses_are_served(tmp_path) -> None:
    require("echoscu")
    port = free_port()
    config = node_config(tmp_path / "node", port, {"PACS": free_port()})  # nothing is stored or sent
    config.write_text(config.read_text().replace("[node]\n", '[node]\nallowed_ips = ["127.0.0.2"]\n', 1))
    node = NodeProcess(config, port).start()
    try:
        refused = subprocess.run(["/usr/bin/echoscu", "-aet", "ECHOSCU", "-aec", "DIGIMASK", "127.0.0.1", str(port)],
                                 capture_output=True, text=True, env=PEER_ENV, timeout=60)
        ae = AE(ae_title="ECHOSCU")
        ae.add_requested_context(VERIFICATION)
        assoc = ae.associate("127.0.0.1", port, ae_title="DIGIMASK", bind_address=("127.0.0.2", 0))
        try:
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()
    finally:
        node.kill()
    assert refused.returncode != 0
    assert "refused connection from 127.0.0.1 (not in node.allowed_ips)" in node.log()
    assert "127.0.0.2 (not in" not in node.log()
