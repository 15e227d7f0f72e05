"""Scale-out executor: processing and sending as Celery tasks, run by ``digimask worker`` processes.

The database stays the durable record and the per-destination queue; a task is only a trigger. Every
task first claims its item (compare-and-set), so a duplicate or re-announced task does nothing. The
node announces each received instance from one dispatcher thread (a slow broker never delays a C-STORE
reply) and periodically re-announces work whose trigger may have been lost (broker restart, crash).
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading

from celery import Celery
from digimask.config.settings import Settings
from digimask.pipeline.process import Processor
from digimask.scp_node.forward import send_batch, settle
from digimask.scp_node.subjects import LookupSync
from digimask.scp_node.worker import process_one
from digimask.storage.models import utcnow
from digimask.storage.store import Store, open_store

log = logging.getLogger(__name__)

app = Celery("digimask")
app.conf.update(
    task_serializer="json", accept_content=["json"], result_backend=None, task_ignore_result=True,
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
)
_settings: dict[str, Settings] = {}
_local = threading.local()  # per worker thread: its store and its processor (a GL context is per thread)


def configure(settings: Settings) -> Celery:
    app.conf.update(broker_url=settings.scale.celery_broker_url, task_default_queue=settings.scale.queue)
    _settings["current"] = settings
    return app


def _store() -> Store:
    if not hasattr(_local, "store"):
        _local.store = open_store(_settings["current"])
    return _local.store


def _processor() -> tuple[Processor, LookupSync]:
    if not hasattr(_local, "processor"):
        _local.lookup = LookupSync(_store(), _settings["current"].deid.key())
        _local.processor = Processor(_settings["current"], lookup=_local.lookup.lookup)
    return _local.processor, _local.lookup


@app.task(name="digimask.process_instance")
def process_instance(instance_id: int) -> str:
    settings, store = _settings["current"], _store()
    item = store.claim_instance(settings.pipeline.lease_s, only_id=instance_id)
    if item is None:
        return "not waiting"  # done or claimed elsewhere: a duplicate trigger
    processor, lookup = _processor()
    outcome = process_one(store, processor, item, lookup)
    if outcome != "queued":
        return outcome
    for delivery_id, destination in store.delivery_ids(instance_id):
        send_delivery.delay(delivery_id, destination)
    return "queued"


@app.task(name="digimask.send_delivery")
def send_delivery(delivery_id: int, destination: str) -> str:
    settings, store = _settings["current"], _store()
    items = store.claim_deliveries(destination, 1, settings.pipeline.lease_s, only_id=delivery_id)
    if not items:
        return "not due"
    dest = settings.destination(destination)
    (outcome,) = send_batch(settings.node, dest, items)
    when = settle(store, settings, dest, outcome)
    if when is not None:
        send_delivery.apply_async((delivery_id, destination), eta=when.replace(tzinfo=dt.UTC))
        return "retry"
    return "sent" if outcome.ok else "failed"


class Dispatcher(threading.Thread):
    """In the node: publish announced instances, and sweep for work whose trigger was lost."""

    def __init__(self, store: Store, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="dispatcher", daemon=True)
        self.store, self.settings, self.stop = store, settings, stop
        self.announced: queue.Queue[int] = queue.Queue()
        configure(settings)

    def announce(self, instance_id: int) -> None:
        self.announced.put(instance_id)

    def run(self) -> None:
        interval = self.settings.scale.sweep_interval_s
        next_sweep = utcnow()
        while not self.stop.is_set():
            try:
                instance_id = self.announced.get(timeout=min(1.0, interval))
                process_instance.delay(instance_id)
            except queue.Empty:
                pass
            except Exception as exc:  # broker down: the sweep announces it again later
                log.warning("cannot publish to the task broker (%s); will retry", type(exc).__name__)
            if utcnow() >= next_sweep:
                next_sweep = utcnow() + dt.timedelta(seconds=interval)
                self._sweep(interval)

    def _sweep(self, interval: float) -> None:
        try:
            waiting, due = self.store.due_work(received_before=utcnow() - dt.timedelta(seconds=interval))
            for instance_id in waiting:
                process_instance.delay(instance_id)
            for delivery_id, destination in due:
                send_delivery.delay(delivery_id, destination)
        except Exception as exc:
            log.warning("sweep failed (%s); will retry", type(exc).__name__)
