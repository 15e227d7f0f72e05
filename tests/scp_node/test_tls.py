"""DICOM over TLS (PS3.15 B.1): DCMTK storescu with a client certificate -> the node; plain TCP refused."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import dicom_factory as f
import pytest
from digimask.config.settings import load
from digimask.storage.store import open_store
from peers import PEER_ENV, NodeProcess, free_port, node_config, require, wait_for


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A test CA and, signed by it, a certificate for the node and one for the modality."""
    require("openssl")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=digimask test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    for name in ("node", "modality"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", str(d / f"{name}.crt"))
    return d


def test_tls_with_client_certificate(pki, astronaut, tmp_path) -> None:
    require("storescu")
    port = free_port()
    tls = (f'[node.tls]\ncert_file = "{pki}/node.crt"\nkey_file = "{pki}/node.key"\n'
           f'ca_file = "{pki}/ca.crt"\nrequire_client_cert = true\n')
    config = node_config(tmp_path / "node", port, {"PACS": free_port()})
    config.write_text(config.read_text().replace("[storage]", tls + "[storage]", 1))
    node = NodeProcess(config, port).start()
    try:
        image = f.save(f.op8("tls", astronaut), tmp_path / "tls.dcm")
        base = ["/usr/bin/storescu", "-aet", "STORESCU", "-aec", "DIGIMASK"]
        secure = subprocess.run([*base, "+tls", str(pki / "modality.key"), str(pki / "modality.crt"), "+cf", str(pki / "ca.crt"),
                                 "127.0.0.1", str(port), str(image)], capture_output=True, text=True, env=PEER_ENV, timeout=60)
        assert secure.returncode == 0, secure.stderr
        anonymous = subprocess.run([*base, "+tla", "+cf", str(pki / "ca.crt"), "127.0.0.1", str(port), str(image)],
                                   capture_output=True, text=True, env=PEER_ENV, timeout=60)
        plain = subprocess.run([*base, "127.0.0.1", str(port), str(image)], capture_output=True, text=True, env=PEER_ENV, timeout=60)
        assert anonymous.returncode != 0  # TLS without a client certificate: refused (require_client_cert)
        assert plain.returncode != 0
        store = open_store(load(config))
        wait_for(lambda: sum(store.counts().values()) == 1, 30, "the instance received over TLS")
    finally:
        node.kill(signal.SIGTERM)


def test_client_certificates_need_a_ca(pki) -> None:
    from digimask.config.settings import TLS

    with pytest.raises(ValueError, match="require_client_cert needs ca_file"):
        TLS(cert_file=pki / "node.crt", key_file=pki / "node.key", require_client_cert=True)
    assert TLS(cert_file=pki / "node.crt", key_file=pki / "node.key", ca_file=pki / "ca.crt", require_client_cert=True)
