"""Durable intake with group commit: what must hold before a C-STORE may answer Success, in as few
device flushes as that allows, and off the database's write lock.

Each association's thread fsyncs its own file (in parallel with the others; the bytes are never
copied) and renames it into the inbox under a name that carries the AE titles. Then the instances that
are ready form a batch: one thread (the leader) fsyncs the inbox folder once for the whole batch, which
makes every renamed name durable; the others wait for it, then each answers. Instances that arrive while
a batch is being flushed form the next one. One association alone pays two flushes per instance (its
file, the folder); N concurrent ones pay N + 1 per batch.

The instance is then kept: the file holds the dataset, its name the calling and called AE titles
(``files.inbox_name``), and ``Store.recover`` adopts every inbox file without a row at start. So its
database row need not be committed before Success. On SQLite, which has one writer and whose lock the
pipeline's commits hold (each with an fsync), the :class:`Recorder` writes the rows right after, in
batches, on connections with ``synchronous=NORMAL``; a failed write is retried, never dropped. Rows a
SIGKILL or a power loss prevents or rolls back are adopted from the inbox at the next start. With
PostgreSQL (many writers) the batch's rows are committed in the group commit, before Success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digimask.storage.files import fsync_dir

log = logging.getLogger(__name__)


@dataclass
class Received:
    rel: Path  # under the data folder, already renamed into the inbox
    pseudo_uid: str
    sop_class_uid: str
    calling_ae: str
    called_ae: str
    announce: Callable[[int], None] | None = None  # told the row's ID once it is recorded (scale-out)


class _Slot:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Received) -> None:
        self.item = item
        self.done = False
        self.result: int | None = None
        self.error: Exception | None = None


class GroupCommit:
    """``commit(item)`` returns once ``item``'s name is durable, sharing the folder fsync with every item
    committed at the same time; then ``record`` takes the batch (writes its rows in one transaction and
    returns their IDs, or hands them to a :class:`Recorder` and returns None). If the fsync or ``record``
    raises, every item of the batch gets the exception."""

    def __init__(self, folder: Path, record: Callable[[list[Received]], list[int | None] | None]) -> None:
        self.folder, self._record = folder, record
        self._cv = threading.Condition()
        self._queue: list[_Slot] = []
        self._flushing = False
        self.batches = 0  # flushes so far

    def commit(self, item: Received) -> int | None:
        slot = _Slot(item)
        with self._cv:
            self._queue.append(slot)
            while not slot.done:
                if self._flushing:
                    self._cv.wait()
                    continue
                batch, self._queue, self._flushing = self._queue, [], True
                self._cv.release()
                try:
                    self._flush(batch)
                finally:
                    self._cv.acquire()
                    self._flushing = False
                    self._cv.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _flush(self, batch: list[_Slot]) -> None:
        try:
            fsync_dir(self.folder)
            ids = self._record([s.item for s in batch])
        except Exception as exc:
            for s in batch:
                s.error, s.done = exc, True
        else:
            for s, iid in zip(batch, ids or [None] * len(batch), strict=True):
                s.result, s.done = iid, True
        self.batches += 1


class Recorder:
    """Writes the rows of instances already durable in the inbox, after their Success, in batches; one
    thread, started with the first batch. ``record`` returns the rows' IDs (None: the row was there);
    each item's ``announce`` gets its ID.

    A batch is taken ``linger_s`` after its first item arrived: the rows lag their Success by that much
    at most, and a stream of instances costs one transaction per ``linger_s`` instead of one each (a
    transaction holds the GIL for about 0.3 ms, which the associations' threads wait for)."""

    def __init__(self, record: Callable[[list[Received]], list[int | None]], linger_s: float = 0.05) -> None:
        self._record, self._linger_s = record, linger_s
        self._cv = threading.Condition()
        self._pending: list[Received] = []
        self._busy = False
        self._thread: threading.Thread | None = None

    def put(self, items: list[Received]) -> None:
        with self._cv:
            self._pending += items
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="intake-recorder", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def wait(self, timeout: float) -> bool:
        """True once every item put so far has its row (tests; a stopping node)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._pending))
                self._busy = True
            time.sleep(self._linger_s)
            with self._cv:
                batch, self._pending = self._pending, []
            try:
                ids = self._record(batch)
            except Exception as exc:  # the files are in the inbox: retry, and recover() adopts them at start
                log.error("could not record %d received instance(s) (%s); retrying", len(batch), type(exc).__name__)
                with self._cv:
                    self._pending[:0], self._busy = batch, False
                backoff = min(max(2 * backoff, 0.05), 5.0)
                time.sleep(backoff)
                continue
            backoff = 0.0
            for item, iid in zip(batch, ids, strict=True):
                if item.announce is not None and iid is not None:
                    item.announce(iid)
            with self._cv:
                self._busy = False
                self._cv.notify_all()
