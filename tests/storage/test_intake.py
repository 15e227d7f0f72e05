"""Durable intake: group commit, the intake's SQLite commits without a WAL fsync, and recovery of what a
power loss can roll back (storage/intake.py)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from digimask.config.settings import load
from digimask.storage.files import inbox_aes, inbox_name
from digimask.storage.intake import GroupCommit, Received
from digimask.storage.models import Event, Instance, State
from digimask.storage.store import open_store
from peers import node_config
from sqlalchemy import delete, text


def item(i: int) -> Received:
    return Received(Path(f"inbox/{i}.dcm"), f"2.25.{i}", "1.2", "STORESCU", "DIGIMASK")


def test_instances_that_arrive_during_a_flush_share_the_next_one(tmp_path) -> None:
    first_flush, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def record(batch: list[Received]) -> list[int]:
        batches.append([r.pseudo_uid for r in batch])
        if len(batches) == 1:
            first_flush.set()
            release.wait(10)
        return [int(r.pseudo_uid.rsplit(".", 1)[1]) for r in batch]

    commit = GroupCommit(tmp_path, record)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, commit.commit(item(i)))) for i in range(5)]
    threads[0].start()
    assert first_flush.wait(10)
    for t in threads[1:]:
        t.start()
    while len(commit._queue) < 4:  # the four wait behind the first flush
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert results == {i: i for i in range(5)}  # each gets its own row's ID
    assert batches[0] == ["2.25.0"] and sorted(batches[1]) == [f"2.25.{i}" for i in range(1, 5)]
    assert commit.batches == 2


def test_a_failed_flush_fails_every_instance_of_its_batch(tmp_path) -> None:
    def record(batch: list[Received]) -> list[int]:
        raise OSError("disk full")

    commit = GroupCommit(tmp_path, record)
    with pytest.raises(OSError):
        commit.commit(item(1))
    with pytest.raises(OSError):  # the next batch tries again (and fails again)
        commit.commit(item(2))


def store_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_store(load(node_config(tmp_path / "node", 11112, {"PACS": 104})))


def test_intake_commits_skip_the_wal_fsync_other_commits_keep_it(tmp_path) -> None:
    store = store_for(tmp_path)
    with store.intake_sessions() as s:
        assert s.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    with store.sessions() as s:
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL: processing, queue, audit


def received(store, data: bytes, calling: str = "MODALITY/1", called: str = "DIGIMASK") -> int:  # type: ignore[no-untyped-def]
    """An instance through the SCP's path; its ID once the recorder has written its row."""
    store.incoming.mkdir(parents=True, exist_ok=True)
    (store.incoming / "stream.dcm").write_bytes(data)
    ids: list[int] = []
    assert store.receive_file(store.incoming / "stream.dcm", "2.25.1", "1.2", calling, called, ids.append) is None
    assert store.recorder.wait(10)
    (iid,) = ids
    return iid


def test_received_file_is_renamed_with_its_ae_titles_and_recorded(tmp_path) -> None:
    store = store_for(tmp_path)
    iid = received(store, b"received")
    inst = store.instance(iid)[0]
    path = store.data_dir / inst.original_path
    assert path.read_bytes() == b"received" and not (store.incoming / "stream.dcm").exists()
    assert path.stat().st_mode & 0o077 == 0
    assert inbox_aes(path.name) == ("MODALITY/1", "DIGIMASK")
    assert inst.state == State.RECEIVED and inst.calling_ae == "MODALITY/1"


def test_success_does_not_wait_for_the_database_write_lock(tmp_path) -> None:
    """The pipeline's commits hold SQLite's one write lock (each with an fsync): the instance is durable
    without it, and its row follows once the lock is free."""
    store = store_for(tmp_path)
    store.incoming.mkdir(parents=True, exist_ok=True)
    (store.incoming / "stream.dcm").write_bytes(b"durable first")
    ids: list[int] = []
    with store.sessions.begin() as s:
        s.execute(text("UPDATE storage_instance SET reason = NULL"))  # takes the write lock and keeps it
        started = time.monotonic()
        store.receive_file(store.incoming / "stream.dcm", "2.25.1", "1.2", "CAMERA", "DIGIMASK", ids.append)
        assert time.monotonic() - started < 1
        assert not ids and len(list((store.data_dir / "inbox").iterdir())) == 1
        threading.Event().wait(0.3)
        assert not ids  # still waiting for the lock
    assert store.recorder.wait(10) and len(ids) == 1 and store.instance(ids[0])[0].calling_ae == "CAMERA"


def test_the_recorder_skips_a_file_recover_adopted_first(tmp_path) -> None:
    store = store_for(tmp_path)
    rel = Path("inbox") / inbox_name("CAMERA", "DIGIMASK")
    (store.data_dir / rel).write_bytes(b"durable")
    assert store.recover() == 1  # e.g. the pipeline process restarted while the row was on its way
    ids: list[int] = []
    store.recorder.put([Received(rel, "2.25.1", "1.2", "CAMERA", "DIGIMASK", ids.append)])
    assert store.recorder.wait(10)
    assert ids == [] and len(store.instances()) == 1  # one row for one file


def test_a_row_a_power_loss_rolled_back_is_adopted_with_its_routing(tmp_path) -> None:
    store = store_for(tmp_path)
    iid = received(store, b"acknowledged", "CAMERA", "DIGIMASK_EYES")
    with store.sessions.begin() as s:  # what a power loss can do to a synchronous=NORMAL commit
        s.execute(delete(Event).where(Event.instance_id == iid))  # the whole transaction: row and event
        s.execute(delete(Instance).where(Instance.id == iid))
    assert store.recover() == 1
    (adopted,) = store.instances(State.RECEIVED)
    assert (adopted.calling_ae, adopted.called_ae) == ("CAMERA", "DIGIMASK_EYES")
    assert (store.data_dir / adopted.original_path).read_bytes() == b"acknowledged"


def test_inbox_names_say_nothing_but_the_ae_titles() -> None:
    name = inbox_name("STORESCU", "DIGIMASK")
    assert inbox_aes(name) == ("STORESCU", "DIGIMASK") and name.endswith(".dcm")
    assert inbox_aes("0123abcd.dcm") == ("", "")  # a name from before: adopted without AE titles, as before
