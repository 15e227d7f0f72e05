#!/usr/bin/env python3
"""Cost of a ``/metrics`` scrape at N instances (default 100,000), against a plain ``/api/v1/status`` call
in the same run, on the embedded SQLite database (PostgreSQL with ``--database-url``).

The database is filled as a busy node leaves it: every instance received, masked (the worker's seconds in
its event), queued and delivered, 2% quarantined, five events each. Both requests go through the console's
ASGI app with an API token (FastAPI's TestClient: no network). A scrape is timed twice: in the console's
first minute (every masked event aggregated) and after it, with ``--recent`` instances masked since (the
settled part is kept; the run waits ``metrics.SETTLE_S``). The other peer measured in the same run is the
former histograms, which read every event and bucketed them in Python.

    .venv/bin/python benchmarks/metrics.py [N] [--repeat R] [--database-url URL]
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from digimask.config.settings import parse
from digimask.scp_node.console import metrics
from digimask.scp_node.console.app import create_app
from digimask.storage.accounts import Accounts
from digimask.storage.models import Delivery, Event, Instance, Role, Send, State
from digimask.storage.store import Store, open_store
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

CHUNK = 10_000


def fill(store: Store, n: int, seed: int = 0) -> None:
    """``n`` instances with their events and deliveries, inserted in chunks (Core executemany)."""
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2026, 1, 1)
    with store.sessions.begin() as s:
        first = (s.scalar(select(Instance.id).order_by(Instance.id.desc()).limit(1)) or 0) + 1
    for start in range(first, first + n, CHUNK):
        ids = range(start, min(first + n, start + CHUNK))
        received = [t0 + dt.timedelta(seconds=float(i)) for i in ids]
        wait = rng.exponential(2.0, len(ids))  # queue wait before a worker takes it
        work = rng.lognormal(0.0, 0.6, len(ids))  # the worker's own seconds
        quarantined = rng.random(len(ids)) < 0.02
        instances, events, deliveries = [], [], []
        for k, iid in enumerate(ids):
            at = received[k]
            masked = at + dt.timedelta(seconds=float(wait[k] + work[k]))
            state = State.QUARANTINED if quarantined[k] else State.DONE
            instances.append({"id": iid, "pseudo_uid": f"2.25.{iid}", "pseudo_patient_id": f"DM-{iid % 997}",
                              "sop_class_uid": "1.2.840.10008.5.1.4.1.1.77.1.5.1", "calling_ae": "STORESCU",
                              "called_ae": "DIGIMASK", "state": state.value, "reason": "no face or eye found" if quarantined[k] else None,
                              "received_at": at, "updated_at": masked})
            events.append({"instance_id": iid, "at": at, "state": "received", "detail": "from STORESCU"})
            if quarantined[k]:
                events.append({"instance_id": iid, "at": masked, "state": "quarantined", "detail": "no face or eye found"})
                continue
            events += [{"instance_id": iid, "at": masked, "state": "deidentified+masked",
                        "detail": f"masker=digital_mask; seconds={work[k]:.3f}; removed=2 tags"},
                       {"instance_id": iid, "at": masked, "state": "queued", "detail": "ORTHANC"},
                       {"instance_id": iid, "at": masked + dt.timedelta(seconds=0.2), "state": "forwarded", "detail": "ORTHANC"},
                       {"instance_id": iid, "at": masked + dt.timedelta(seconds=0.2), "state": "done", "detail": None}]
            deliveries.append({"instance_id": iid, "destination": "ORTHANC", "state": Send.DONE.value, "attempts": 1,
                               "next_attempt_at": masked, "created_at": masked, "done_at": masked + dt.timedelta(seconds=0.2)})
        with store.sessions.begin() as s:
            s.execute(insert(Instance), instances)
            s.execute(insert(Event), events)
            s.execute(insert(Delivery), deliveries)


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``repeat`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def former_scrape(store: Store) -> None:
    """The peer: every processing pair and every masked event's detail read, histograms built in Python."""
    from sqlalchemy import func

    with store.sessions() as s:
        got = select(Event.instance_id, func.min(Event.at).label("at")).where(Event.state == "received").group_by(Event.instance_id).subquery()
        done = select(Event.instance_id, func.min(Event.at).label("at")).where(Event.state == "deidentified+masked").group_by(Event.instance_id).subquery()
        pairs = s.execute(select(got.c.at, done.c.at).join(done, done.c.instance_id == got.c.instance_id)).all()
        details = s.scalars(select(Event.detail).where(Event.state == "deidentified+masked")).all()
    for times in ([max(0.0, (b - a).total_seconds()) for a, b in pairs],
                  [float(p.removeprefix("seconds=")) for d in details for p in (d or "").split("; ") if p.startswith("seconds=")]):
        [(b, sum(t <= b for t in times)) for b in metrics.BUCKETS]
        sum(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--recent", type=int, default=200, help="instances masked within the last settle time")
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = parse({"node": {"allowed_calling_aes": ["STORESCU"]}, "deid": {"secret": "k"},
                          "storage": {"data_dir": "data", "database_url": args.database_url},
                          "destinations": [{"name": "ORTHANC", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242}]},
                         Path(tmp))
        store = open_store(settings)
        start = time.perf_counter()
        fill(store, args.n)
        print(f"filled {args.n} instances in {time.perf_counter() - start:.1f} s")
        accounts = Accounts(store.sessions)
        accounts.add_user("bench", Role.VIEWER, None)
        client = TestClient(create_app(settings, store), headers={"Authorization": f"Bearer {accounts.issue_token('bench')}"})
        status = timed(lambda: client.get("/api/v1/status"), args.repeat)
        cold = timed(lambda: client.get("/metrics"), args.repeat)  # the console's first minute: nothing settled
        former = timed(lambda: former_scrape(store), args.repeat)
        time.sleep(metrics.SETTLE_S + 1)
        client.get("/metrics")  # settles what the first scrapes saw
        fill(store, args.recent, seed=1)  # the traffic since
        steady = timed(lambda: client.get("/metrics"), args.repeat)
        print(f"/api/v1/status {status * 1000:.0f} ms; /metrics in the console's first minute {cold * 1000:.0f} ms "
              f"({cold / status:.2f}x status), after it {steady * 1000:.1f} ms ({steady / status:.3f}x status, "
              f"{args.recent} instances masked within the last {metrics.SETTLE_S:.0f} s)")
        print(f"the peer, the former histograms alone (every event read, Python): {former * 1000:.0f} ms "
              f"({former / status:.2f}x status)")


if __name__ == "__main__":
    main()
