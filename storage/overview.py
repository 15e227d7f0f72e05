"""Read-side queries for the console and the metrics: queue depths, rates, filtered instance lists,
processing times, the geometry a mask drew; deleting a quarantined original with a reason and keeping the
drawn geometry. Built on the Store's session factory; the queue operations themselves (retry, release)
stay the Store's."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from digimask.storage.models import Delivery, DrawnGeometry, Event, Instance, State, utcnow
from digimask.storage.store import Store
from sqlalchemy import func, select


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


def processing_seconds(store: Store) -> list[float]:
    """Seconds from receipt to the masked output, per processed instance (queue wait included)."""
    with store.sessions() as s:
        got = select(Event.instance_id, func.min(Event.at).label("at")).where(Event.state == "received").group_by(Event.instance_id).subquery()
        done = select(Event.instance_id, func.min(Event.at).label("at")).where(Event.state == "deidentified+masked").group_by(Event.instance_id).subquery()
        pairs = s.execute(select(got.c.at, done.c.at).join(done, done.c.instance_id == got.c.instance_id)).all()
    return [max(0.0, (b - a).total_seconds()) for a, b in pairs]


def masking_seconds(store: Store) -> list[float]:
    """The worker's own time per processed instance (read, de-identify, decode, mask, encode), from the
    ``seconds=`` its "deidentified+masked" event records."""
    with store.sessions() as s:
        details = s.scalars(select(Event.detail).where(Event.state == "deidentified+masked")).all()
    out = []
    for detail in details:
        for part in (detail or "").split("; "):
            if part.startswith("seconds="):
                out.append(float(part.removeprefix("seconds=")))
    return out


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
