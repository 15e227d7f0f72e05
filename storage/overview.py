"""Read-side queries for the console and the metrics: queue depths, rates, filtered instance lists,
processing times, the geometry a mask drew; deleting a quarantined original with a reason and keeping the
drawn geometry. Built on the Store's session factory; the queue operations themselves (retry, release)
stay the Store's."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from digimask.storage.models import (
    Delivery,
    DrawnGeometry,
    Event,
    Instance,
    State,
    utcnow,
)
from digimask.storage.store import Store
from sqlalchemy import Float, Select, case, cast, func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class InstanceFilter:
    state: State | None = None
    destination: str | None = None
    since: dt.datetime | None = None  # received at or after (naive UTC)
    until: dt.datetime | None = None
    limit: int = 100
    offset: int = 0


def find_instances(store: Store, f: InstanceFilter) -> list[Instance]:
    with store.sessions() as s:
        q = select(Instance).order_by(Instance.id.desc()).limit(f.limit).offset(f.offset)
        if f.state is not None:
            q = q.where(Instance.state == f.state)
        if f.destination:
            q = q.where(Instance.id.in_(select(Delivery.instance_id).where(Delivery.destination == f.destination)))
        if f.since is not None:
            q = q.where(Instance.received_at >= f.since)
        if f.until is not None:
            q = q.where(Instance.received_at < f.until)
        return list(s.scalars(q).all())


def delivery_counts(store: Store) -> dict[str, dict[str, int]]:
    """Deliveries by destination, then state."""
    out: dict[str, dict[str, int]] = {}
    with store.sessions() as s:
        for dest, state, n in s.execute(select(Delivery.destination, Delivery.state, func.count())
                                        .group_by(Delivery.destination, Delivery.state)).all():
            out.setdefault(dest, {})[str(state.value if hasattr(state, "value") else state)] = n
    return out


def event_rates(store: Store, minutes: tuple[int, ...] = (1, 5, 15)) -> dict[str, dict[str, float]]:
    """Events per minute (received, masked, forwarded, quarantined) over the last N minutes."""
    now = utcnow()
    kinds = {"received": "received", "masked": "deidentified+masked", "forwarded": "forwarded", "quarantined": "quarantined"}
    out: dict[str, dict[str, float]] = {}
    with store.sessions() as s:
        for m in minutes:
            since = now - dt.timedelta(minutes=m)
            got = dict(s.execute(select(Event.state, func.count()).where(Event.at >= since, Event.state.in_(kinds.values()))
                                 .group_by(Event.state)).all())
            out[f"{m}m"] = {k: round(got.get(v, 0) / m, 3) for k, v in kinds.items()}
    return out


def quarantine_reasons(store: Store) -> dict[str, int]:
    with store.sessions() as s:
        return {r or "": n for r, n in s.execute(select(Instance.reason, func.count()).where(Instance.state == State.QUARANTINED)
                                                 .group_by(Instance.reason)).all()}


MASKED = "deidentified+masked"


@dataclass(frozen=True)
class Histogram:
    """Observations per bucket (``counts[k]``: at most ``bounds[k]`` and above the bound before it; the
    last: above every bound) and their sum."""

    counts: tuple[int, ...]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls((0,) * (len(bounds) + 1))

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)), self.total + other.total)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Observations at most each bound, then all of them (Prometheus' ``le`` buckets)."""
        return list(accumulate(self.counts))


def last_event_id(store: Store) -> int:
    with store.sessions() as s:
        return int(s.scalar(select(func.max(Event.id))) or 0)


def masked_histograms(store: Store, bounds: tuple[float, ...], after_id: int = 0,
                      upto_id: int | None = None) -> dict[str, Histogram]:
    """Two histograms over the "deidentified+masked" events with ``after_id < id <= upto_id``, each one
    GROUP BY in the database: ``processing``, seconds from receipt to the masked output (queue wait
    included), and ``masking``, the worker's own time (read, de-identify, decode, mask, encode) that the
    event's ``seconds=`` records."""
    with store.sessions() as s:
        sqlite = s.get_bind().dialect.name == "sqlite"
        if sqlite:
            # julianday's doubles resolve about 40 us at today's dates: rounded to 0.1 ms, a time on a
            # bucket's bound stays on it
            waited = func.round((func.julianday(Event.at) - func.julianday(Instance.received_at)) * 86400.0, 4)
            worked = cast(func.substr(Event.detail, func.instr(Event.detail, "seconds=") + 8), Float)
        else:  # PostgreSQL
            waited = func.extract("epoch", Event.at - Instance.received_at)
            worked = cast(func.substring(Event.detail, r"seconds=([0-9.]+)"), Float)
        events = [Event.state == MASKED, Event.id > after_id] + ([Event.id <= upto_id] if upto_id is not None else [])
        queries = {
            "processing": select(waited.label("t")).join(Instance, Instance.id == Event.instance_id).where(*events),
            "masking": select(worked.label("t")).where(*events, Event.detail.like("%seconds=%")),
        }
        return {name: _histogram(s, q, bounds) for name, q in queries.items()}


def _histogram(s: Session, seconds: Select, bounds: tuple[float, ...]) -> Histogram:
    # materialised: the seconds are parsed once a row, not once for each bucket's comparison
    t = seconds.cte("seconds").prefix_with("MATERIALIZED")
    value = case((t.c.t < 0, 0.0), else_=t.c.t)  # clock steps between hosts: never below zero
    bucket = case(*[(value <= b, k) for k, b in enumerate(bounds)], else_=len(bounds)).label("bucket")
    counts, total = [0] * (len(bounds) + 1), 0.0
    for k, n, seconds_sum in s.execute(select(bucket, func.count(), func.sum(value)).group_by(bucket)).all():
        counts[k], total = n, total + float(seconds_sum or 0.0)
    return Histogram(tuple(counts), total)


def delete_quarantined(store: Store, iid: int, reason: str, by: str) -> bool:
    """Delete a quarantined instance's original for good (it stays listed, with the reason, as deleted).
    False if it is not in quarantine or its original is already gone."""
    with store.sessions.begin() as s:
        inst = s.get(Instance, iid)
        if inst is None or inst.state != State.QUARANTINED or not inst.original_path:
            return False
        path = store.data_dir / inst.original_path
        inst.original_path, inst.original_deleted_at = None, utcnow()
        s.add(Event(instance_id=iid, state="deleted", detail=f"by {by}: {reason}"[:256], node_id=store.node_id))
    path.unlink(missing_ok=True)  # after the commit: a failed commit leaves the original and its row as they were
    return True


def save_drawn_geometry(store: Store, iid: int, doc: dict[str, Any]) -> None:
    """Keep what the mask drew for instance ``iid`` (replacing an earlier run's, e.g. before a release)."""
    with store.sessions.begin() as s:
        s.merge(DrawnGeometry(instance_id=iid, doc=json.dumps(doc, separators=(",", ":")), at=utcnow()))


def drawn_geometry(store: Store, iid: int) -> dict[str, Any] | None:
    with store.sessions() as s:
        row = s.get(DrawnGeometry, iid)
        return json.loads(row.doc) if row is not None else None
