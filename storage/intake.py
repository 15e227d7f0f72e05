"""Durable intake with group commit: what must hold before a C-STORE may answer Success, in as few
device flushes as that allows.

Each association's thread fsyncs its own file (in parallel with the others; the bytes are never
copied) and renames it into the inbox. Then the instances that are ready form a batch: one thread (the
leader) fsyncs the inbox folder once for the whole batch, which makes every renamed name durable, and
records the batch's rows in one database transaction; the others wait for it, then each answers.
Instances that arrive while a batch is being flushed form the next one. One association alone pays two
flushes per instance (its file, the folder); N concurrent ones pay N + 1 per batch, not 3 N.

The rows are committed with SQLite ``synchronous=NORMAL``: a committed row survives a SIGKILL of the
node (SQLite's WAL is in the page cache, which the kernel keeps), but a power loss may roll back the
last commits. That is safe because a row holds nothing the inbox does not: the file (fsynced) holds the
dataset, its name (folder fsynced) the calling and called AE titles (``files.inbox_name``), and
``Store.recover`` adopts every inbox file without a row at start. So after Success the instance
survives a SIGKILL (row and file) and a power loss (the file and its name; the row again on restart).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digimask.storage.files import fsync_dir


@dataclass
class Received:
    rel: Path  # under the data folder, already renamed into the inbox
    pseudo_uid: str
    sop_class_uid: str
    calling_ae: str
    called_ae: str


class _Slot:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Received) -> None:
        self.item = item
        self.done = False
        self.result = 0
        self.error: Exception | None = None


class GroupCommit:
    """``commit(item)`` returns once ``item``'s name and row are durable, sharing the folder fsync and the
    transaction with every item committed at the same time. ``record`` writes one batch's rows in one
    transaction and returns their IDs; if it raises, every item of the batch gets the exception."""

    def __init__(self, folder: Path, record: Callable[[list[Received]], list[int]]) -> None:
        self.folder, self._record = folder, record
        self._cv = threading.Condition()
        self._queue: list[_Slot] = []
        self._flushing = False
        self.batches = 0  # flushes so far

    def commit(self, item: Received) -> int:
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
            for s, iid in zip(batch, ids, strict=True):
                s.result, s.done = iid, True
        self.batches += 1
