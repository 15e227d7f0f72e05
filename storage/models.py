"""Database tables. Keyed by pseudonymous identifiers only: no names, patient IDs, dates of birth or
original UIDs are ever stored here in the clear (the original files on disk are the only place PHI lives;
the pseudonym map holds originals encrypted, see ``storage/lookup.py``)."""
from __future__ import annotations

import datetime as dt
from enum import Enum

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    """Naive UTC: SQLite has no time zones, so every timestamp is stored as naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class State(str, Enum):
    RECEIVED = "received"  # on disk and recorded; waiting for a worker
    PROCESSING = "processing"  # claimed by a worker (lease)
    QUEUED = "queued"  # de-identified and masked; deliveries pending
    DONE = "done"  # every destination confirmed Success
    FAILED = "failed"  # a delivery gave up (max age); kept, visible, retryable
    QUARANTINED = "quarantined"  # cannot be released; reason recorded; original kept


class Send(str, Enum):
    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


class Instance(Base):
    __tablename__ = "storage_instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pseudo_uid: Mapped[str] = mapped_column(String(64), index=True)  # SOP Instance UID of the output
    pseudo_patient_id: Mapped[str | None] = mapped_column(String(32), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16))
    called_ae: Mapped[str] = mapped_column(String(16))
    state: Mapped[State] = mapped_column(String(16), index=True, default=State.RECEIVED)
    reason: Mapped[str | None] = mapped_column(String(256))
    original_path: Mapped[str | None] = mapped_column(String(512))  # relative to the data folder
    output_path: Mapped[str | None] = mapped_column(String(512))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # which claim may record the result
    original_deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="instance", order_by="Delivery.id")
    events: Mapped[list[Event]] = relationship(back_populates="instance", order_by="Event.id")


class Delivery(Base):
    """One instance to one destination: a durable queue entry, deleted never (state DONE instead)."""

    __tablename__ = "storage_delivery"
    __table_args__ = (UniqueConstraint("instance_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("storage_instance.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[Send] = mapped_column(String(16), index=True, default=Send.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # which claim may record the outcome

    instance: Mapped[Instance] = relationship(back_populates="deliveries")


class Event(Base):
    """Audit trail: every state change of an instance, with a reason that never contains PHI."""

    __tablename__ = "storage_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("storage_instance.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(256))
    node_id: Mapped[str | None] = mapped_column(String(128))

    instance: Mapped[Instance] = relationship(back_populates="events")


class DrawnGeometry(Base):
    """What the mask drew (``digimask.geometry/1`` JSON, see ``pipeline/mask/overlay.py``), for the console's
    overlay over the masked image: eye geometry in image pixels, computed from the mask's parameters only.
    A table of its own, so a database made before it gains it at start (``db.init`` creates missing tables)."""

    __tablename__ = "storage_drawn_geometry"

    instance_id: Mapped[int] = mapped_column(ForeignKey("storage_instance.id"), primary_key=True)
    doc: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Role(str, Enum):
    """Console roles, each including the ones before it."""

    VIEWER = "viewer"  # read, masked previews
    OPERATOR = "operator"  # + retry, release, delete
    PRIVACY = "privacy"  # + original previews, the pseudonym map (every such view audited)


class ConsoleUser(Base):
    """A local console account; the password only as an Argon2 hash."""

    __tablename__ = "console_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(256))  # None: API tokens only
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ConsoleCredential(Base):
    """A browser session or an API token of a console user, kept as the SHA-256 of the secret only."""

    __tablename__ = "console_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # "session" | "token"
    user_id: Mapped[int] = mapped_column(ForeignKey("console_user.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: a token until revoked


class ConsoleAudit(Base):
    """What console users did and saw: logins (failed ones too), actions, views of originals and of the map."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[str | None] = mapped_column(String(256))


class PseudonymEntry(Base):
    """One original identifier (a patient ID or a study UID) and its pseudonym.

    The original is stored only encrypted (a key derived from the de-identification key) and indexed by a
    keyed hash, so the table holds no PHI in the clear: the one place the map is kept for the privacy officer.
    """

    __tablename__ = "console_pseudonym"
    __table_args__ = (UniqueConstraint("kind", "index_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))  # "patient" | "study"
    index_hash: Mapped[str] = mapped_column(String(64))
    original_enc: Mapped[str] = mapped_column(String(512))
    pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    subject_name: Mapped[str | None] = mapped_column(String(64))  # from an imported lookup
    source: Mapped[str] = mapped_column(String(8))  # "lookup" (pre-assigned) | "seen" (keyed default)
    patient_pseudonym: Mapped[str | None] = mapped_column(String(64))  # for a study: its patient's
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
