"""The node's durable state: the inbox of originals, the outbox of masked instances, the per-destination
delivery queues, quarantine and the audit trail.

Concurrency: every claim is a compare-and-set ``UPDATE ... WHERE state = ...`` checked by its row count,
which is atomic on SQLite and PostgreSQL alike, so several worker threads and several node processes
sharing one database never process or send the same item twice at once. A claim carries a lease; an
expired lease (a crashed node) is taken over.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from digimask.config.settings import Settings
from digimask.storage import db
from digimask.storage.files import inbox_aes, inbox_name, move_durable, new_name, sync_file, write_durable
from digimask.storage.intake import GroupCommit, Received, Recorder
from digimask.storage.models import Delivery, DrawnGeometry, Event, Instance, Send, State, utcnow
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
_INSERT_INSTANCE = Instance.__table__.insert().returning(Instance.__table__.c.id)
_INSERT_EVENT = Event.__table__.insert()


@dataclass(frozen=True)
class Claimed:
    id: int
    path: Path
    calling_ae: str
    called_ae: str
    token: str  # only the holder of the current claim may record the instance's result


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    instance_id: int
    sop_class_uid: str
    path: Path
    attempts: int
    created_at: dt.datetime
    token: str  # only the holder of the current claim may record the outcome


class Store:
    def __init__(self, data_dir: Path, sessions: sessionmaker, node_id: str,
                 intake_sessions: sessionmaker | None = None) -> None:
        """``intake_sessions`` (SQLite): the intake's rows are written after Success by a
        :class:`~digimask.storage.intake.Recorder` on these sessions (``synchronous=NORMAL``); without
        them, in the group commit before Success. ``storage/intake.py`` says why both are durable."""
        self.data_dir = data_dir
        self.sessions = sessions
        self.intake_sessions = intake_sessions or sessions
        self.node_id = node_id
        for sub in ("inbox", "outbox", "quarantine", "incoming"):  # originals hold PHI: owner-only folders
            (data_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.recorder = Recorder(self._record) if intake_sessions is not None else None
        self.intake = GroupCommit(data_dir / "inbox", self.recorder.put if self.recorder else self._record)

    # -- intake -------------------------------------------------------------------------------------
    def receive(self, data: bytes, pseudo_uid: str, sop_class_uid: str, calling_ae: str, called_ae: str) -> int:
        """Persist one received instance (fsync) and record it; only then may the SCP say Success."""
        rel = Path("inbox") / inbox_name(calling_ae, called_ae)
        write_durable(self.data_dir / rel, data)
        try:
            (iid,) = self._record([Received(rel, pseudo_uid, sop_class_uid, calling_ae, called_ae)])
        except Exception:
            (self.data_dir / rel).unlink(missing_ok=True)
            raise
        assert iid is not None
        return iid

    def receive_file(self, path: Path, pseudo_uid: str, sop_class_uid: str, calling_ae: str, called_ae: str,
                     announce: Callable[[int], None] | None = None, *, synced: bool = False) -> None:
        """As :meth:`receive`, for a file already written under :attr:`incoming` (renamed, not copied): its
        bytes fsynced here (``synced``: by the caller, with ``files.sync_file``), its name in a group commit
        with other associations' instances. Returns once the instance is durable; its row (then
        ``announce(id)``) follows from the recorder on SQLite, or is committed in the group commit."""
        if not synced:
            sync_file(path)
        rel = Path("inbox") / inbox_name(calling_ae, called_ae)
        os.replace(path, self.data_dir / rel)
        try:
            iid = self.intake.commit(Received(rel, pseudo_uid, sop_class_uid, calling_ae, called_ae, announce))
        except Exception:
            (self.data_dir / rel).unlink(missing_ok=True)
            raise
        if iid is not None and announce is not None:
            announce(iid)

    @property
    def incoming(self) -> Path:
        """Where this node's SCP writes streams being received (chunked receive; the inbox's file system)."""
        return self.data_dir / "incoming" / re.sub(r"[^A-Za-z0-9._-]", "_", self.node_id)

    def clear_incoming(self) -> int:
        """Before the SCP starts: streams a previous run was receiving were never acknowledged (the modality
        sends them again)."""
        self.incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
        stale = list(self.incoming.iterdir())
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def _record(self, batch: list[Received]) -> list[int | None]:
        """The rows of a batch of received instances, in one transaction; None for a file that has a row
        already (``recover`` adopted it first)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with self.intake_sessions.begin() as s:  # Core on the connection, not the ORM: it is on the hot path
                    conn, now = s.connection(), utcnow()
                    known = set(conn.execute(select(Instance.original_path).where(
                        Instance.original_path.in_([str(r.rel) for r in batch]))).scalars())
                    ids = [None if str(r.rel) in known else conn.execute(_INSERT_INSTANCE, {
                        "pseudo_uid": r.pseudo_uid, "sop_class_uid": r.sop_class_uid, "calling_ae": r.calling_ae,
                        "called_ae": r.called_ae, "state": State.RECEIVED.value, "original_path": str(r.rel),
                        "received_at": now, "updated_at": now}).scalar_one() for r in batch]
                    events = [{"instance_id": iid, "at": now, "state": State.RECEIVED.value,
                               "detail": f"from {r.calling_ae}", "node_id": self.node_id}
                              for iid, r in zip(ids, batch) if iid is not None]
                    if events:
                        conn.execute(_INSERT_EVENT, events)
                    return ids
            except OperationalError as exc:
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.0005)  # SQLite writer busy: retry soon
                    continue
                raise

    # -- processing ---------------------------------------------------------------------------------
    def claim_instance(self, lease_s: float, only_id: int | None = None) -> Claimed | None:
        """Claim the oldest instance waiting for processing (or ``only_id``, if it is waiting)."""
        now = utcnow()
        with self.sessions() as s:
            query = select(Instance.id).where(or_(
                Instance.state == State.RECEIVED,
                and_(Instance.state == State.PROCESSING, Instance.lease_until < now),
            ))
            if only_id is not None:
                query = query.where(Instance.id == only_id)
            candidates = s.scalars(query.order_by(Instance.id).limit(20)).all()
            for iid in candidates:
                token = uuid.uuid4().hex
                taken = s.execute(
                    update(Instance).where(Instance.id == iid, or_(
                        Instance.state == State.RECEIVED,
                        and_(Instance.state == State.PROCESSING, Instance.lease_until < now),
                    )).values(state=State.PROCESSING, claimed_by=self.node_id, claim_token=token,
                              lease_until=now + dt.timedelta(seconds=lease_s), updated_at=now)
                ).rowcount
                s.commit()
                if taken == 1:
                    inst = s.get(Instance, iid)
                    assert inst is not None and inst.original_path is not None
                    return Claimed(iid, self.data_dir / inst.original_path, inst.calling_ae, inst.called_ae, token)
        return None

    @staticmethod
    def _held(s: Session, claim: Claimed | ClaimedDelivery) -> Instance | Delivery | None:
        """The claimed instance or delivery, locked for update, if ``claim`` is still its current claim;
        else None (the lease ran out and another worker or sender took it over: its result is the one kept)."""
        model, busy = (Instance, State.PROCESSING) if isinstance(claim, Claimed) else (Delivery, Send.SENDING)
        row = s.scalars(select(model).where(model.id == claim.id).with_for_update()).one_or_none()
        if row is None or row.state != busy or row.claim_token != claim.token:
            log.warning("%s %s: claim lost (lease expired and taken over); result not recorded",
                        model.__name__.lower(), claim.id)
            return None
        return row

    def processed(self, claim: Claimed, output: bytes, destinations: Iterable[str], *, pseudo_uid: str,
                  sop_class_uid: str, pseudo_patient_id: str, detail: str = "") -> bool:
        """Store the masked output and queue it for every destination, in one transaction. False (and
        nothing kept) if the claim was lost meanwhile."""
        rel = Path("outbox") / new_name()
        write_durable(self.data_dir / rel, output)
        with self.sessions.begin() as s:
            inst = self._held(s, claim)
            if inst is not None:
                inst.state, inst.output_path = State.QUEUED, str(rel)
                inst.pseudo_uid, inst.sop_class_uid, inst.pseudo_patient_id = pseudo_uid, sop_class_uid, pseudo_patient_id
                inst.claimed_by = inst.lease_until = inst.claim_token = None
                self._event(s, claim.id, "deidentified+masked", detail or None)
                for dest in destinations:
                    s.add(Delivery(instance_id=claim.id, destination=dest))
                self._event(s, claim.id, State.QUEUED, ", ".join(destinations))
        if inst is None:
            (self.data_dir / rel).unlink(missing_ok=True)
        return inst is not None

    def quarantine(self, claim: Claimed, reason: str) -> bool:
        """Keep the original aside with ``reason``; False (nothing changed) if the claim was lost."""
        with self.sessions.begin() as s:
            inst = self._held(s, claim)
            if inst is None:
                return False
            if inst.original_path and inst.original_path.startswith("inbox/"):
                new_rel = Path("quarantine") / Path(inst.original_path).name
                src = self.data_dir / inst.original_path
                if src.exists():
                    move_durable(src, self.data_dir / new_rel)
                inst.original_path = str(new_rel)
            inst.state, inst.reason = State.QUARANTINED, reason[:256]
            inst.claimed_by = inst.lease_until = inst.claim_token = None
            self._event(s, claim.id, State.QUARANTINED, reason)
        log.warning("instance %s (%s) quarantined: %s", claim.id, _short(inst.pseudo_uid), reason)
        return True

    def release(self, iid: int) -> bool:
        """Send a quarantined instance through the pipeline again (after the administrator's fix)."""
        with self.sessions.begin() as s:
            inst = s.get(Instance, iid)
            if inst is None or inst.state != State.QUARANTINED or not inst.original_path:
                return False
            new_rel = Path("inbox") / Path(inst.original_path).name
            move_durable(self.data_dir / inst.original_path, self.data_dir / new_rel)
            inst.original_path, inst.state, inst.reason = str(new_rel), State.RECEIVED, None
            self._event(s, iid, "released", "by administrator")
        return True

    # -- forwarding ---------------------------------------------------------------------------------
    def claim_deliveries(self, destination: str, limit: int, lease_s: float, only_id: int | None = None) -> list[ClaimedDelivery]:
        """Claim up to ``limit`` due deliveries to ``destination`` (or just ``only_id``, if due)."""
        now = utcnow()
        due = _due(now)
        out: list[ClaimedDelivery] = []
        with self.sessions() as s:
            query = select(Delivery.id).where(Delivery.destination == destination, due)
            if only_id is not None:
                query = query.where(Delivery.id == only_id)
            ids = s.scalars(query.order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)).all()
            for did in ids:
                token = uuid.uuid4().hex
                taken = s.execute(update(Delivery).where(Delivery.id == did, due).values(
                    state=Send.SENDING, claimed_by=self.node_id, claim_token=token,
                    lease_until=now + dt.timedelta(seconds=lease_s))).rowcount
                s.commit()
                if taken == 1:
                    d = s.get(Delivery, did)
                    assert d is not None and d.instance.output_path is not None
                    out.append(ClaimedDelivery(did, d.instance_id, d.instance.sop_class_uid,
                                               self.data_dir / d.instance.output_path, d.attempts, d.created_at, token))
        return out

    def due_work(self, received_before: dt.datetime) -> tuple[list[int], list[tuple[int, str]]]:
        """Instances waiting since before ``received_before`` and deliveries due now: what a task
        dispatcher re-announces in case a trigger was lost (claims make duplicates harmless)."""
        with self.sessions() as s:
            waiting = s.scalars(select(Instance.id).where(Instance.state == State.RECEIVED,
                                                          Instance.updated_at < received_before)).all()
            due = s.execute(select(Delivery.id, Delivery.destination).where(_due(utcnow()))).all()
            return list(waiting), [(d, dest) for d, dest in due]

    def delivery_ids(self, iid: int) -> list[tuple[int, str]]:
        with self.sessions() as s:
            return [(d, dest) for d, dest in s.execute(select(Delivery.id, Delivery.destination)
                                                        .where(Delivery.instance_id == iid)).all()]

    def delivered(self, claim: ClaimedDelivery, keep_originals_days: float) -> bool:
        with self.sessions.begin() as s:
            d = self._held(s, claim)
            if d is None:
                return False
            d.state, d.done_at, d.attempts, d.last_error = Send.DONE, utcnow(), d.attempts + 1, None
            d.claimed_by = d.lease_until = d.claim_token = None
            inst = d.instance
            self._event(s, inst.id, "forwarded", d.destination)
            if all(x.state == Send.DONE for x in inst.deliveries):
                inst.state = State.DONE
                self._event(s, inst.id, State.DONE, None)
                self._delete_files(s, inst, originals=keep_originals_days <= 0)
        return True

    def send_failed(self, claim: ClaimedDelivery, error: str, next_attempt_at: dt.datetime | None) -> bool:
        """Retry at ``next_attempt_at``; ``None`` means the delivery gave up (visible FAILED state)."""
        with self.sessions.begin() as s:
            d = self._held(s, claim)
            if d is None:
                return False
            d.attempts += 1
            d.last_error = error[:256]
            d.claimed_by = d.lease_until = d.claim_token = None
            if next_attempt_at is None:
                d.state = Send.FAILED
                d.instance.state = State.FAILED
                self._event(s, d.instance_id, "delivery failed", f"{d.destination}: {error}")
            else:
                d.state, d.next_attempt_at = Send.PENDING, next_attempt_at
        return True

    def retry_pending(self, destination: str | None = None) -> int:
        """Make every PENDING delivery (all, or one destination's) due now: the destination is back."""
        with self.sessions.begin() as s:
            query = update(Delivery).where(Delivery.state == Send.PENDING)
            if destination:
                query = query.where(Delivery.destination == destination)
            return s.execute(query.values(next_attempt_at=utcnow())).rowcount

    def retry_failed(self, destination: str | None = None, delivery_id: int | None = None) -> int:
        """Requeue FAILED deliveries (all, one destination's, or the one ``delivery_id``) for an immediate
        new attempt."""
        with self.sessions.begin() as s:
            query = select(Delivery).where(Delivery.state == Send.FAILED)
            if destination:
                query = query.where(Delivery.destination == destination)
            if delivery_id is not None:
                query = query.where(Delivery.id == delivery_id)
            rows = [d for d in s.scalars(query).all() if d.instance.output_path]  # not purged
            for d in rows:
                d.state, d.next_attempt_at, d.created_at, d.attempts = Send.PENDING, utcnow(), utcnow(), 0
                d.instance.state = State.QUEUED
                self._event(s, d.instance_id, "retry", d.destination)
            return len(rows)

    # -- recovery and housekeeping ------------------------------------------------------------------
    def recover(self) -> int:
        """At start: give back this node's claims and adopt inbox files that have no row (a crash between
        the rename and the commit, or a power loss that rolled back an intake commit: the AE titles come
        from the file's name). Returns how many instances were put back in the queue."""
        n = 0
        with self.sessions.begin() as s:
            n += s.execute(update(Instance).where(Instance.state == State.PROCESSING, Instance.claimed_by == self.node_id)
                           .values(state=State.RECEIVED, claimed_by=None, lease_until=None, claim_token=None)).rowcount
            s.execute(update(Delivery).where(Delivery.state == Send.SENDING, Delivery.claimed_by == self.node_id)
                      .values(state=Send.PENDING, claimed_by=None, lease_until=None, claim_token=None))
            known = set(s.scalars(select(Instance.original_path).where(Instance.original_path.like("inbox/%"))).all())
            for path in sorted((self.data_dir / "inbox").glob("*.dcm")):
                rel = f"inbox/{path.name}"
                if rel not in known:
                    calling, called = inbox_aes(path.name)
                    inst = Instance(pseudo_uid="", sop_class_uid="", calling_ae=calling, called_ae=called,
                                    state=State.RECEIVED, original_path=rel)
                    s.add(inst)
                    s.flush()
                    self._event(s, inst.id, State.RECEIVED, "adopted after restart")
                    n += 1
        for part in (self.data_dir / "inbox").glob(".*.part"):
            part.unlink(missing_ok=True)  # never acknowledged: the modality sends it again
        return n

    def purge_originals(self, keep_days: float) -> int:
        """Delete originals of instances DONE more than ``keep_days`` ago."""
        cutoff = utcnow() - dt.timedelta(days=keep_days)
        with self.sessions.begin() as s:
            rows = s.scalars(select(Instance).where(Instance.state == State.DONE, Instance.original_deleted_at.is_(None),
                                                    Instance.updated_at < cutoff)).all()
            for inst in rows:
                self._delete_files(s, inst, originals=True)
            return len(rows)

    def purge_stale(self, quarantined_days: float, failed_days: float) -> int:
        """Delete the originals (and outputs) of instances QUARANTINED or FAILED longer than the given days
        (0: never), each with an audit event; the rows stay, so the trail does."""
        now, n = utcnow(), 0
        with self.sessions.begin() as s:
            for state, days in ((State.QUARANTINED, quarantined_days), (State.FAILED, failed_days)):
                if days <= 0:
                    continue
                rows = s.scalars(select(Instance).where(Instance.state == state, Instance.original_deleted_at.is_(None),
                                                        Instance.updated_at < now - dt.timedelta(days=days))).all()
                for inst in rows:
                    self._delete_files(s, inst, originals=True)
                    self._event(s, inst.id, "purged", f"original deleted after {days:g} day(s) {state.value}")
                n += len(rows)
        return n

    def _delete_files(self, s: Session, inst: Instance, originals: bool) -> None:
        """The output (with the geometry drawn on it, for the console's overlay) and, if asked, the original."""
        if inst.output_path:
            (self.data_dir / inst.output_path).unlink(missing_ok=True)
            inst.output_path = None
            s.execute(delete(DrawnGeometry).where(DrawnGeometry.instance_id == inst.id))
        if originals and inst.original_path:
            (self.data_dir / inst.original_path).unlink(missing_ok=True)
            inst.original_deleted_at = utcnow()

    def _event(self, s: Session, iid: int, state: str, detail: str | None) -> None:
        s.add(Event(instance_id=iid, state=str(state.value if isinstance(state, State) else state),
                    detail=(detail or None) and detail[:256], node_id=self.node_id))

    # -- queries for the CLI ------------------------------------------------------------------------
    def instances(self, state: State | None = None, limit: int = 100) -> list[Instance]:
        with self.sessions() as s:
            q = select(Instance).order_by(Instance.id.desc()).limit(limit)
            if state is not None:
                q = q.where(Instance.state == state)
            return list(s.scalars(q).all())

    def deliveries(self, state: Send | None = None, limit: int = 100) -> list[Delivery]:
        with self.sessions() as s:
            q = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
            if state is not None:
                q = q.where(Delivery.state == state)
            return list(s.scalars(q).all())

    def instance(self, iid: int) -> tuple[Instance, list[Event], list[Delivery]] | None:
        with self.sessions() as s:
            inst = s.get(Instance, iid)
            if inst is None:
                return None
            return inst, list(inst.events), list(inst.deliveries)

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self.sessions() as s:
            return {str(k): v for k, v in s.execute(select(Instance.state, func.count()).group_by(Instance.state)).all()}


def _due(now: dt.datetime):  # type: ignore[no-untyped-def]
    return or_(
        and_(Delivery.state == Send.PENDING, Delivery.next_attempt_at <= now),
        and_(Delivery.state == Send.SENDING, Delivery.lease_until < now),
    )


def _short(uid: str) -> str:
    return uid[-12:] if uid else "?"


def open_store(settings: Settings, busy_timeout_s: float = 30) -> Store:
    """The node's store from its settings: the data folder (created 0700) and the database, schema checked."""
    Path(settings.storage.data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    url = settings.storage.db_url
    sessions = db.init(db.make_engine(url, busy_timeout_s))
    intake = None
    if url.startswith("sqlite:///"):  # a file: the intake's own connections commit without a WAL fsync
        intake = sessionmaker(db.make_engine(url, busy_timeout_s, synchronous="NORMAL"), expire_on_commit=False)
    return Store(Path(settings.storage.data_dir), sessions, settings.node.node_id, intake)
