"""The durable store on SQLite and on a real PostgreSQL, including several processes sharing one database."""
from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import threading
from pathlib import Path

import pytest
from databases import database
from digimask.storage import db
from digimask.storage.models import Send, State, utcnow
from digimask.storage.overview import drawn_geometry, save_drawn_geometry
from digimask.storage.store import Store
from store_workers import deliver_all

KINDS = ["sqlite", "postgresql"]


def open_store(url: str, data_dir: Path, node_id: str = "node-a") -> Store:
    return Store(data_dir, db.init(db.make_engine(url)), node_id)


@pytest.fixture(params=KINDS)
def url(request, tmp_path):  # type: ignore[no-untyped-def]
    with database(request.param, tmp_path) as u:
        yield u


def receive(store: Store, n: int) -> list[int]:
    return [store.receive(f"dicom-{i}".encode(), f"2.25.{i}", "1.2.3", "STORESCU", "DIGIMASK") for i in range(n)]


def test_lifecycle_receive_process_deliver(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    (iid,) = receive(store, 1)
    original = tmp_path / "data" / store.instance(iid)[0].original_path
    assert original.read_bytes() == b"dicom-0"
    assert original.stat().st_mode & 0o077 == 0 and original.parent.stat().st_mode & 0o077 == 0  # PHI: owner only
    claimed = store.claim_instance(lease_s=60)
    assert claimed is not None and claimed.id == iid and store.claim_instance(lease_s=60) is None
    store.processed(claimed, b"masked", ["A", "B"], pseudo_uid="2.25.9", sop_class_uid="1.2.3", pseudo_patient_id="DM-1")
    save_drawn_geometry(store, iid, {"schema": "digimask.geometry/1", "eyes": {}})
    a = store.claim_deliveries("A", 10, 60)
    assert [d.instance_id for d in a] == [iid] and a[0].path.read_bytes() == b"masked"
    store.delivered(a[0], keep_originals_days=0)
    assert store.instance(iid)[0].state == State.QUEUED and original.exists()  # B has not confirmed yet
    assert drawn_geometry(store, iid) is not None
    b = store.claim_deliveries("B", 10, 60)
    store.delivered(b[0], keep_originals_days=0)
    inst, events, deliveries = store.instance(iid)
    assert inst.state == State.DONE and not original.exists() and not a[0].path.exists()
    assert drawn_geometry(store, iid) is None  # the overlay goes with the masked output it was drawn on
    assert {e.state for e in events} >= {"received", "deidentified+masked", "queued", "forwarded", "done"}
    assert all(d.state == Send.DONE and d.attempts == 1 for d in deliveries)


def test_retry_backoff_failure_and_manual_retry(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    (iid,) = receive(store, 1)
    store.processed(store.claim_instance(60), b"x", ["A"], pseudo_uid="2.25.9", sop_class_uid="1.2.3", pseudo_patient_id="DM-1")
    (d,) = store.claim_deliveries("A", 10, 60)
    store.send_failed(d, "association rejected", utcnow() + dt.timedelta(hours=1))
    assert store.claim_deliveries("A", 10, 60) == []  # not due yet
    store.sessions().close()
    with store.sessions.begin() as s:  # make it due now
        from digimask.storage.models import Delivery

        s.get(Delivery, d.id).next_attempt_at = utcnow()
    (d,) = store.claim_deliveries("A", 10, 60)
    assert d.attempts == 1
    store.send_failed(d, "gave up", None)
    assert store.instance(iid)[0].state == State.FAILED
    assert store.instance(iid)[2][0].last_error == "gave up"
    assert store.retry_failed("A") == 1
    assert len(store.claim_deliveries("A", 10, 60)) == 1


def test_quarantine_keeps_the_original_and_release_requeues(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    (iid,) = receive(store, 1)
    store.quarantine(store.claim_instance(60), "no face found")
    inst = store.instance(iid)[0]
    assert inst.state == State.QUARANTINED and inst.reason == "no face found"
    assert (tmp_path / "data" / inst.original_path).read_bytes() == b"dicom-0"
    assert inst.original_path.startswith("quarantine/")
    assert store.release(iid) and store.claim_instance(60).id == iid


def test_recover_releases_own_claims_and_adopts_orphans(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    receive(store, 2)
    assert store.claim_instance(600) is not None
    (tmp_path / "data" / "inbox" / "orphan.dcm").write_bytes(b"fsynced but never recorded")
    other = open_store(url, tmp_path / "data", node_id="node-b")
    assert other.recover() == 1  # only the orphan: node-a's claim is not node-b's to take back
    assert store.recover() == 1  # node-a restarted: its claim goes back to the queue
    ids = {store.claim_instance(60).id for _ in range(3)}
    assert len(ids) == 3


def test_expired_lease_is_taken_over_by_another_node(url, tmp_path) -> None:
    a = open_store(url, tmp_path / "data", "node-a")
    b = open_store(url, tmp_path / "data", "node-b")
    receive(a, 1)
    assert a.claim_instance(lease_s=-1) is not None  # already expired: node-a "crashed"
    assert b.claim_instance(lease_s=60) is not None


def test_a_claim_taken_over_cannot_record_its_result(url, tmp_path) -> None:
    """A worker whose lease ran out (slow or stalled) finishes after another took the instance over:
    its result is discarded (no second output file, no second delivery, no quarantine on top)."""
    a = open_store(url, tmp_path / "data", "node-a")
    b = open_store(url, tmp_path / "data", "node-b")
    (iid,) = receive(a, 1)
    stale = a.claim_instance(lease_s=-1)
    current = b.claim_instance(lease_s=60)
    assert stale is not None and current is not None
    assert not a.processed(stale, b"late", ["PACS"], pseudo_uid="2.25.8", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    assert not a.quarantine(stale, "no face found")
    assert b.instance(iid)[0].state == State.PROCESSING
    assert b.processed(current, b"masked", ["PACS"], pseudo_uid="2.25.9", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    assert not a.processed(stale, b"late", ["PACS"], pseudo_uid="2.25.8", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    inst, _, deliveries = b.instance(iid)
    assert inst.state == State.QUEUED and inst.pseudo_uid == "2.25.9" and len(deliveries) == 1
    assert [p.read_bytes() for p in (tmp_path / "data" / "outbox").iterdir()] == [b"masked"]


def test_a_delivery_taken_over_cannot_record_its_outcome(url, tmp_path) -> None:
    """A sender whose lease ran out reports after another sender delivered: the delivery stays done
    (a stale failure would have queued a resend of a file already removed)."""
    a = open_store(url, tmp_path / "data", "node-a")
    b = open_store(url, tmp_path / "data", "node-b")
    (iid,) = receive(a, 1)
    a.processed(a.claim_instance(60), b"m", ["PACS"], pseudo_uid="2.25.1", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    (stale,) = a.claim_deliveries("PACS", 1, lease_s=-1)
    (current,) = b.claim_deliveries("PACS", 1, lease_s=60)
    assert b.delivered(current, keep_originals_days=0)
    assert not a.send_failed(stale, "association aborted", utcnow())
    assert not a.delivered(stale, keep_originals_days=0)
    inst, _, (d,) = a.instance(iid)
    assert inst.state == State.DONE and d.state == Send.DONE and d.attempts == 1


def test_two_processes_never_send_the_same_delivery(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    for iid in receive(store, 40):
        store.processed(store.claim_instance(60), b"m", ["PACS"], pseudo_uid=f"2.25.{iid}", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    ctx = mp.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=deliver_all, args=(url, str(tmp_path / "data"), f"node-{i}", "PACS", queue, start))
             for i in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    sent = results[0] + results[1]
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 40
    if url.startswith("postgresql"):  # SQLite's writer lock may let one process win every race: still no duplicate
        assert all(results), "both processes should have won some claims"
    assert store.counts() == {"done": 40}


def test_threads_claim_each_instance_once(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    receive(store, 30)
    claimed: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while (c := store.claim_instance(60)) is not None:
            with lock:
                claimed.append(c.id)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 30


def test_originals_kept_for_the_retention_period(url, tmp_path) -> None:
    store = open_store(url, tmp_path / "data")
    (iid,) = receive(store, 1)
    store.processed(store.claim_instance(60), b"m", ["A"], pseudo_uid="2.25.1", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    (d,) = store.claim_deliveries("A", 1, 60)
    store.delivered(d, keep_originals_days=7)
    original = tmp_path / "data" / store.instance(iid)[0].original_path
    assert original.exists() and not d.path.exists()  # masked copy gone once confirmed, original kept
    assert store.purge_originals(7) == 0 and original.exists()
    assert store.purge_originals(0) == 1 and not original.exists()
    assert store.instance(iid)[0].original_deleted_at is not None


def test_quarantined_and_failed_originals_are_purged_after_their_time(url, tmp_path) -> None:
    from digimask.storage.models import Instance

    store = open_store(url, tmp_path / "data")
    quarantined, failed, fresh = receive(store, 3)
    store.quarantine(store.claim_instance(60), "no face found")
    store.processed(store.claim_instance(60), b"m", ["A"], pseudo_uid="2.25.1", sop_class_uid="1.2.3", pseudo_patient_id="DM")
    (d,) = store.claim_deliveries("A", 1, 60)
    store.send_failed(d, "refused: status 0xA900", None)
    store.quarantine(store.claim_instance(60), "no face found")  # the third: quarantined just now
    paths = {i: tmp_path / "data" / store.instance(i)[0].original_path for i in (quarantined, failed, fresh)}
    with store.sessions.begin() as s:  # the first two have waited 31 days
        for iid in (quarantined, failed):
            s.get(Instance, iid).updated_at = utcnow() - dt.timedelta(days=31)
    assert store.purge_stale(quarantined_days=0, failed_days=0) == 0  # 0: never
    assert store.purge_stale(quarantined_days=30, failed_days=30) == 2
    assert not paths[quarantined].exists() and not paths[failed].exists() and paths[fresh].exists()
    for iid, state in ((quarantined, "quarantined"), (failed, "failed")):
        inst, events, _ = store.instance(iid)
        assert inst.original_deleted_at is not None and inst.state == state  # the row and its trail stay
        assert events[-1].state == "purged" and events[-1].detail == f"original deleted after 30 day(s) {state}"
    assert store.retry_failed("A") == 0  # nothing left to send
    assert store.purge_stale(30, 30) == 0
