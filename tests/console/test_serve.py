"""`digimask serve` with its console, stopped as service managers stop it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import dicom_factory as f
import pytest
from console.support import console_config
from digimask.config.settings import load
from digimask.storage.store import open_store
from peers import require, storescu, wait_for, wait_port

pytestmark = pytest.mark.peers


def test_stops_on_sigterm_to_the_process_group(small_face, tmp_path) -> None:
    """systemd (KillMode=control-group), timeout(1) and `kill -- -PGID` signal every process of the node:
    it must still stop cleanly, and not hang in the pipeline process' stop event."""
    require("storescu")
    config, port, cport = console_config(tmp_path / "node", 9)
    sent = f.save(f.op8("serve", small_face), tmp_path / "in.dcm")
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "digimask", "serve", "--config", str(config)],
                                stdout=log, stderr=log, start_new_session=True)
    try:
        wait_port(port, 60)
        wait_port(cport, 30)
        with socket.create_connection(("127.0.0.1", cport), timeout=5):
            pass
        assert storescu(port, [sent]).returncode == 0
        store = open_store(load(config))
        wait_for(lambda: store.counts().get("queued"), 60, "the pipeline process to queue it")  # it is in its loop
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", cport), timeout=2).close()
