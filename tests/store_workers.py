"""Code run in child processes by the storage tests (must be importable by module name under spawn)."""
from __future__ import annotations

import time
from pathlib import Path

from digimask.storage import db
from digimask.storage.models import utcnow
from digimask.storage.store import Store


def deliver_all(url: str, data_dir: str, node_id: str, destination: str, queue, start) -> None:  # type: ignore[no-untyped-def]
    """Claim and confirm deliveries until none is left; report the ids this process sent.

    ``start`` (a multiprocessing Barrier) makes the processes race from the same moment.
    """
    store = Store(Path(data_dir), db.init(db.make_engine(url)), node_id)
    sent = []
    start.wait()
    while True:
        items = store.claim_deliveries(destination, 3, 60)
        if not items:
            if store.due_work(utcnow())[1]:
                continue  # lost every race for these candidates; others are still due
            break
        for d in items:
            sent.append(d.id)
            time.sleep(0.01)  # a send takes time: gives the other process its chance to race
            store.delivered(d, 0)
    queue.put(sent)
