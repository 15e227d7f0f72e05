"""Scale-out with Celery on the machine's real Redis: the node dispatches, `digimask worker` processes."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import uuid

import dicom_factory as f
import pydicom
import pytest
from digimask.config.settings import load
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.storage.store import open_store
from peers import (
    NodeProcess,
    Orthanc,
    free_port,
    node_config,
    require,
    storescu,
    wait_for,
)

REDIS = ("127.0.0.1", 6379)


@pytest.fixture
def redis_url() -> str:
    with socket.socket() as s:
        if s.connect_ex(REDIS) != 0:
            msg = f"Redis not reachable at {REDIS}: the scale-out test needs the machine's Redis"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
    return f"redis://{REDIS[0]}:{REDIS[1]}/0"


def test_worker_processes_what_the_node_received(redis_url, astronaut, tmp_path) -> None:
    require("storescu", "Orthanc")
    pacs = Orthanc(tmp_path / "orthanc").start()
    queue = f"digimask-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    scale = f'[scale]\ncelery_broker_url = "{redis_url}"\nqueue = "{queue}"\nsweep_interval_s = 1\n'
    config = node_config(tmp_path / "node", port, {"ORTHANC": pacs.dicom_port}, extra=scale)
    node = NodeProcess(config, port).start()
    worker = None
    try:
        files = [f.save(f.op8(f"celery-{i}", astronaut[::2, ::2], i), tmp_path / f"c{i}.dcm") for i in range(4)]
        assert storescu(port, files).returncode == 0  # accepted while no worker runs: the tasks wait in Redis
        store = open_store(load(config))
        wait_for(lambda: store.counts() == {"received": 4}, 5, "the rows, which follow Success (the recorder's batch)")
        log = open(tmp_path / "worker.log", "wb")
        worker = subprocess.Popen([sys.executable, "-m", "digimask", "worker", "--config", str(config)], stdout=log, stderr=log)
        wait_for(lambda: len(pacs.instances()) == 4, 120, "4 instances in Orthanc via the worker")
        wait_for(lambda: store.counts() == {"done": 4}, 30, "deliveries confirmed")
        pseudo = Pseudonymizer(load(config).deid.key())
        expected = {pseudo.derived_uid(pydicom.dcmread(p).SOPInstanceUID) for p in files}
        got = {pydicom.dcmread(io.BytesIO(pacs.file(i))).SOPInstanceUID for i in pacs.instances()}
        assert got == expected
        worker_log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "digimask.process_instance" in worker_log and "digimask.send_delivery" in worker_log
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        node.kill(signal.SIGTERM)
        pacs.stop()
        subprocess.run(["redis-cli", "-h", REDIS[0], "-p", str(REDIS[1]), "del", queue], capture_output=True)
