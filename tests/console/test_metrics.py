"""The histograms of ``/metrics``: aggregated by the database (SQLite and PostgreSQL), equal to bucketing
every masked event by hand, and the settled part kept between scrapes instead of read again."""
from __future__ import annotations

import datetime as dt

import pytest
from databases import database
from digimask.config.settings import parse
from digimask.scp_node.console.metrics import BUCKETS, MaskedHistograms
from digimask.storage.models import Event, Instance
from digimask.storage.overview import MASKED, Histogram, masked_histograms
from digimask.storage.store import Store, open_store
from sqlalchemy import update

# (queue wait before the worker, the worker's seconds): one in the first bucket, on a bound, past the last
TIMES = [(0.0, 0.05), (0.4, 0.1), (3.0, 2.5), (20.0, 7.25), (700.0, 650.0), (0.0, 0.3)]


def by_hand(store: Store) -> dict[str, Histogram]:
    """The former scrape: every masked event read and bucketed in Python."""
    with store.sessions() as s:
        rows = [(e.at, e.instance.received_at, e.detail) for e in s.query(Event).filter(Event.state == MASKED)]
    waited = [max(0.0, (at - got).total_seconds()) for at, got, _ in rows]
    worked = [float(d.split("seconds=")[1].split(";")[0]) for *_, d in rows if d and "seconds=" in d]
    out = {}
    for name, times in (("processing", waited), ("masking", worked)):
        counts = [sum(1 for t in times if (BUCKETS[k - 1] if k else -1) < t <= b) for k, b in enumerate(BUCKETS)]
        out[name] = Histogram((*counts, sum(1 for t in times if t > BUCKETS[-1])), sum(times))
    return out


def mask(store: Store, waited: float, worked: float) -> None:
    """One instance through the store's own calls, received ``waited + worked`` seconds before its masking."""
    iid = store.receive(b"x", "2.25.1", "1.2.3", "STORESCU", "DIGIMASK")
    claim = store.claim_instance(60)
    assert claim is not None and claim.id == iid
    assert store.processed(claim, b"out", ["PACS"], pseudo_uid="2.25.2", sop_class_uid="1.2.3", pseudo_patient_id="DM-1",
                           detail=f"masker=blank; seconds={worked:.3f}; removed=1 tag")
    with store.sessions.begin() as s:
        at = s.query(Event.at).filter(Event.instance_id == iid, Event.state == MASKED).scalar()
        s.execute(update(Instance).where(Instance.id == iid).values(received_at=at - dt.timedelta(seconds=waited + worked)))


def same(a: dict[str, Histogram], b: dict[str, Histogram]) -> bool:
    """Equal counts; sums within the database's millisecond per observation."""
    return all(a[k].counts == b[k].counts and a[k].total == pytest.approx(b[k].total, abs=1e-3 * a[k].count) for k in a)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_histograms_in_sql_and_the_settled_part_kept(kind, tmp_path) -> None:
    with database(kind, tmp_path) as url:
        store = open_store(parse({"node": {"allowed_calling_aes": ["STORESCU"]}, "deid": {"secret": "k"},
                                  "storage": {"data_dir": "data", "database_url": url}}, tmp_path))
        for waited, worked in TIMES[:3]:
            mask(store, waited, worked)
        got = masked_histograms(store, BUCKETS)
        assert same(got, by_hand(store))
        assert got["processing"].cumulative()[-1] == got["masking"].count == 3
        assert got["masking"].counts[:5] == (2, 0, 0, 0, 1)  # 0.1 s and 2.5 s: on a bound is at most it

        now = [0.0]
        cache = MaskedHistograms(store, settle_s=60, clock=lambda: now[0])
        assert same(cache.read(), by_hand(store)) and cache.settled_id == 0  # nothing settled in the first minute
        seen = max(e.id for e in store.instance(3)[1])
        for waited, worked in TIMES[3:5]:
            mask(store, waited, worked)
        now[0] = 61.0
        assert same(cache.read(), by_hand(store))
        assert cache.settled_id == seen  # the IDs seen a minute ago are settled, the newer ones read again
        mask(store, *TIMES[5])
        now[0] = 130.0
        h = cache.read()
        assert same(h, by_hand(store)) and h["masking"].count == 6 and h["masking"].counts[-1] == 1  # 650 s: past 600

        # a settled event is not read again: rewriting it (no node does) changes nothing in the next scrape
        with store.sessions.begin() as s:
            s.execute(update(Event).where(Event.instance_id == 1, Event.state == MASKED)
                      .values(detail="masker=blank; seconds=500.000"))
        now[0] = 140.0
        assert same(cache.read(), h) and not same(masked_histograms(store, BUCKETS), h)
