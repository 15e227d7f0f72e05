"""The C-STORE handler's durability order (scp_node/receive.py): the file's fsync runs beside the header
check, and Success comes only after it, the rename and the folder's fsync."""
from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import dicom_factory as f
import numpy as np
import pytest
from digimask.config.settings import load
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.scp_node import receive
from digimask.storage import files
from digimask.storage.intake import Received, Recorder
from digimask.storage.store import Store, open_store
from peers import node_config

PSEUDO = Pseudonymizer(b"k" * 32)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(load(node_config(tmp_path / "node", 11112, {"PACS": 104})))
    s.incoming.mkdir(parents=True, exist_ok=True)
    return s


def received(store: Store, tmp_path: Path) -> SimpleNamespace:
    """A C-STORE event as pynetdicom's chunked receive hands it over: the stream in the incoming folder."""
    ds = f.op8("handler", np.zeros((16, 16, 3), np.uint8))
    path = shutil.copy(f.save(ds, tmp_path / "sent.dcm"), store.incoming / "stream.dcm")
    request = SimpleNamespace(AffectedSOPClassUID=ds.SOPClassUID, AffectedSOPInstanceUID=ds.SOPInstanceUID)
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="CAMERA"), acceptor=SimpleNamespace(ae_title="DIGIMASK"))
    return SimpleNamespace(request=request, assoc=assoc, dataset_path=Path(path))


def inbox(store: Store) -> list[Path]:
    return list((store.data_dir / "inbox").iterdir())


def test_success_comes_after_the_files_fsync_then_the_folders(store, tmp_path, monkeypatch) -> None:
    order: list[str] = []
    fsync_started, check_done = threading.Event(), threading.Event()

    def sync_file(path: Path) -> None:
        fsync_started.set()
        assert check_done.wait(5)  # the header check ran while this fsync was under way
        order.append(f"file fsync, inbox {len(inbox(store))}")
        files.sync_file(path)

    def check_received(*args: object) -> None:
        assert fsync_started.wait(5)
        check_done.set()
        return real_check(*args)

    def fsync_dir(folder: Path) -> None:
        order.append(f"folder fsync, inbox {len(inbox(store))}")
        real_fsync_dir(folder)

    real_check, real_fsync_dir = receive.check_received, files.fsync_dir
    monkeypatch.setattr(receive, "sync_file", sync_file)
    monkeypatch.setattr(receive, "check_received", check_received)
    monkeypatch.setattr("digimask.storage.intake.fsync_dir", fsync_dir)
    status = receive.handle_store(received(store, tmp_path), store, PSEUDO, ThreadPoolExecutor(1))
    assert status == receive.SUCCESS
    assert order == ["file fsync, inbox 0", "folder fsync, inbox 1"]  # renamed between the two, once durable
    assert store.recorder is not None and store.recorder.wait(10) and len(store.instances()) == 1


def test_a_file_that_cannot_be_made_durable_is_refused_and_kept_out_of_the_inbox(store, tmp_path, monkeypatch) -> None:
    def sync_file(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(receive, "sync_file", sync_file)
    status = receive.handle_store(received(store, tmp_path), store, PSEUDO, ThreadPoolExecutor(1))
    assert status == receive.OUT_OF_RESOURCES  # the modality keeps the image and sends it again
    assert inbox(store) == []


def test_a_stream_of_instances_shares_one_recorder_transaction() -> None:
    batches: list[int] = []
    recorder = Recorder(lambda batch: batches.append(len(batch)) or [None] * len(batch), linger_s=0.3)
    for i in range(5):
        recorder.put([Received(Path(f"inbox/{i}.dcm"), f"2.25.{i}", "1.2", "CAMERA", "DIGIMASK")])
        threading.Event().wait(0.01)
    assert recorder.wait(10)
    assert batches == [5]
