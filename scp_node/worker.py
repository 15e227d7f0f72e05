"""The processing worker: claim a received instance, run the pipeline, queue or quarantine it.

A worker never dies on bad input: every failure ends in QUARANTINED with a reason. Each worker
thread owns its own :class:`Processor` (a masker may hold a GL context bound to its thread).
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from digimask.config.settings import Settings
from digimask.pipeline.dicom import private_block
from digimask.pipeline.dicom.read import read
from digimask.pipeline.dicom.validate import complete_output
from digimask.pipeline.errors import Quarantined
from digimask.pipeline.process import Processor
from digimask.scp_node.logs import failure
from digimask.scp_node.subjects import LookupSync
from digimask.storage.overview import save_drawn_geometry
from digimask.storage.store import Claimed, Store
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)


def process_one(store: Store, processor: Processor, item: Claimed,
                lookup: LookupSync | None = None) -> Literal["queued", "quarantined", "lost"]:
    """Run one claimed instance through the pipeline and record the outcome ("lost": the claim ran out
    and another worker took the instance over; its result is the one kept). ``lookup``: the processor's
    pre-assigned subjects, refreshed first; the patient and study pseudonymised are recorded in it."""
    if lookup is not None:
        lookup.refresh()  # outside the try: a database error here is retried, never quarantined
    started = time.perf_counter()
    processor.progress = ClipProgress(item.id)
    try:
        ds = read(item.path)
        done = processor.process(ds, item.calling_ae, item.called_ae)
        complete_output(done.dataset)  # only outputs valid for their IOD are queued
        buf = io.BytesIO()
        done.dataset.save_as(buf, enforce_file_format=True)
    except Quarantined as exc:
        return "quarantined" if store.quarantine(item, exc.reason) else "lost"
    except Exception as exc:  # a bug must not lose the instance or stop the worker
        log.error("internal error on instance %s (%s)", item.id, failure(exc))
        return "quarantined" if store.quarantine(item, f"internal error: {failure(exc)}") else "lost"
    seconds = time.perf_counter() - started  # read, de-identify, decode, mask, encode: the console's histogram
    notes = ", ".join(f"{k}={v}" for k, v in done.notes.items())
    if not store.processed(item, buf.getvalue(), done.destinations, pseudo_uid=str(done.dataset.SOPInstanceUID),
                           sop_class_uid=str(done.dataset.SOPClassUID), pseudo_patient_id=done.pseudo_patient_id,
                           detail=f"masker={processor.masker.name}; seconds={seconds:.3f}" + (f"; {notes}" if notes else "")):
        return "lost"
    keep_drawn_geometry(store, item.id, done.dataset)
    if lookup is not None:
        try:
            lookup.seen(ds, done)
        except Exception as exc:  # the instance is queued; only the privacy officer's map misses this entry
            log.error("instance %s: could not record its pseudonyms in the map (%s)", item.id, failure(exc))
    log.info("instance %s (%s) queued for %s", item.id, str(done.dataset.SOPInstanceUID)[-12:], ", ".join(done.destinations))
    return "queued"


def keep_drawn_geometry(store: Store, iid: int, output: Dataset) -> None:
    """Keep what the mask drew (from the output's DIGIMASK block) for the console's overlay. Never fails the
    instance: without it the console shows the mask without the overlay."""
    try:
        block = private_block.read(output)
        if block is None or block[1] != "digital_mask":
            return
        # imported here: it loads torch, which only a process running the digital mask has loaded
        from digimask.pipeline.mask.overlay import drawn_geometry

        doc = drawn_geometry(block[2])
        if doc is not None:
            save_drawn_geometry(store, iid, doc)
    except Exception as exc:
        log.error("instance %s: the drawn geometry was not kept (%s)", iid, failure(exc))


class ClipProgress:
    """Logs a clip's masking progress at each tenth of its frames (instance ID and frame counts only)."""

    def __init__(self, instance_id: int) -> None:
        self.instance_id, self.tenth = instance_id, 0

    def __call__(self, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth > self.tenth:
            self.tenth = tenth
            log.info("instance %s: %d of %d frames masked", self.instance_id, done, total)


class ProcessWorker(threading.Thread):
    def __init__(self, store: Store, settings: Settings, stop: threading.Event, name: str,
                 make_processor: Callable[[], Processor] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.store, self.settings, self.stop = store, settings, stop
        self.lookup = LookupSync(store, settings.deid.key()) if make_processor is None else None
        self.make_processor = make_processor or (lambda: Processor(settings, lookup=self.lookup.lookup))  # type: ignore[union-attr]

    def run(self) -> None:
        processor = self.make_processor()  # created in this thread: GL contexts belong to it
        while not self.stop.is_set():
            try:
                item = self.store.claim_instance(self.settings.pipeline.lease_s)
            except Exception as exc:
                log.error("cannot claim work (database unavailable?: %s); retrying", failure(exc))
                item = None
            if item is None:
                self.stop.wait(self.settings.pipeline.poll_interval_s)
                continue
            try:
                process_one(self.store, processor, item, self.lookup)
            except Exception as exc:  # e.g. the database went away mid-way: the lease expires and it is redone
                log.error("could not record the result for instance %s (%s); it will be retried", item.id, failure(exc))
