"""Engine and session factory, built from the settings (never at import time)."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

from digimask.storage.models import Base


def make_engine(url: str, busy_timeout_s: float = 30) -> Engine:
    """SQLite gets WAL, full fsync and a busy timeout (several threads write); others as given.

    SQLite's own busy handler sleeps 1 to 100 ms between tries; the intake path passes a tiny
    ``busy_timeout_s`` and retries itself at sub-millisecond intervals (see ``Store.receive``).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10)


def init(engine: Engine) -> sessionmaker:
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
