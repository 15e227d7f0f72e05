"""Engine and session factory, built from the settings (never at import time)."""
from __future__ import annotations

from digimask.storage.models import Base
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import sessionmaker


def make_engine(url: str, busy_timeout_s: float = 30, synchronous: str = "FULL") -> Engine:
    """SQLite gets WAL, ``synchronous`` (FULL: every commit fsyncs the WAL) and a busy timeout (several
    threads write); others as given.

    ``synchronous="NORMAL"`` (the WAL is fsynced at checkpoints only) is for the intake's commits alone:
    a commit then survives a SIGKILL (the WAL is in the page cache) but not always a power loss, and
    everything an intake row records is already durable in its inbox file and name, which
    ``Store.recover`` adopts (see ``storage/intake.py``). SQLite's own busy handler sleeps 1 to 100 ms
    between tries; the intake path passes a tiny ``busy_timeout_s`` and retries itself at sub-millisecond
    intervals.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10)


class SchemaMismatch(RuntimeError):
    """The database was created by an older digimask (tables exist, columns are missing)."""


def init(engine: Engine) -> sessionmaker:
    """Create missing tables; refuse a database whose tables lack columns this version needs (there is
    no automatic migration: a clear refusal at start beats an SQL error on the first C-STORE)."""
    Base.metadata.create_all(engine)
    found = inspect(engine)
    missing = [f"{t.name}.{c.name}" for t in Base.metadata.sorted_tables
               for c in t.columns if c.name not in {col["name"] for col in found.get_columns(t.name)}]
    if missing:
        raise SchemaMismatch(f"the database was created by an older digimask; missing column(s): {', '.join(missing)}"
                             " (add them, or let the queue drain and start on a new database)")
    return sessionmaker(engine, expire_on_commit=False)
