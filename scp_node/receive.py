"""Association and C-STORE/C-ECHO handlers (PS3.4 Annex B): check the header, persist, reply, do nothing slow.

The node receives with pynetdicom's chunked mode (``_config.STORE_RECV_CHUNKED_DATASET``): the stream is
written to a file under ``data/incoming/`` as it arrives, and an accepted instance's file is fsynced and
renamed into the inbox, never copied through memory.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from concurrent.futures import Executor

from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.pipeline.dicom.sop import SUPPORTED_SOP_CLASSES
from digimask.pipeline.dicom.validate import check_received
from digimask.scp_node.logs import failure
from digimask.storage.files import sync_file
from digimask.storage.store import Store
from pynetdicom.events import Event
from pynetdicom.status import Status

log = logging.getLogger(__name__)

# PS3.4 B.2.3 statuses the handler returns (see STORAGE_SERVICE_CLASS_STATUS in pynetdicom.status)
SUCCESS = Status.SUCCESS
SOP_CLASS_NOT_SUPPORTED = 0x0122  # Refused: SOP Class not supported
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources -> the node's own disk or database; the modality retries
DOES_NOT_MATCH = 0xA900  # Error: Data Set does not match SOP Class -> never usable; do not resend
CANNOT_UNDERSTAND = 0xC210  # Error: Cannot understand (as pynetdicom's storescp: the dataset cannot be decoded)

# A-ASSOCIATE-RJ (source, diagnostic) -> why, for the log (PS3.8 9.3.4)
_REJECT_REASONS = {
    (0x01, 0x01): "no reason given", (0x01, 0x02): "application context not supported",
    (0x01, 0x03): "calling AE title not allowed", (0x01, 0x07): "called AE title not one of the node's",
    (0x02, 0x01): "no reason given", (0x02, 0x02): "protocol version not supported",
    (0x03, 0x01): "temporary congestion", (0x03, 0x02): "local limit of associations exceeded",
}


def handle_requested(event: Event, ae_titles: Collection[str]) -> None:
    """Answer as the AE title the peer called, if it is one of the node's (pynetdicom, with
    ``require_called_aet``, then rejects any other with "called AE title not recognised")."""
    called = event.assoc.requestor.primitive.called_ae_title.strip()
    if called in ae_titles:
        event.assoc.acceptor.ae_title = called


def handle_rejected(event: Event) -> None:
    """Every refused association leaves a line at the default level: calling AE, address and why."""
    rq, rj = event.assoc.requestor.primitive, event.assoc.acceptor.primitive
    why = _REJECT_REASONS.get((rj.result_source, rj.diagnostic), "rejected") if rj is not None else "rejected"
    log.warning("refused association from %s at %s:%s calling %s: %s", rq.calling_ae_title.strip(),
                event.assoc.requestor.address, event.assoc.requestor.port, rq.called_ae_title.strip(), why)


def handle_echo(event: Event) -> int:
    return SUCCESS


def handle_store(event: Event, store: Store, pseudo: Pseudonymizer, fsyncs: Executor,
                 announce: Callable[[int], None] | None = None) -> int:
    """Return Success only once the instance is durable in the inbox (file and name fsynced; its database
    row is committed in the same group commit, or right after by the store's recorder on SQLite).

    The file's fsync runs on ``fsyncs`` while this thread checks the header: the one waits for the disk,
    the other for the CPU. Statuses: 0x0000 Success; 0x0122 SOP Class not supported; 0xA900 Data Set
    does not match SOP Class (no pixel data, or its length disagrees with the image attributes, or the
    SOP UIDs differ from the request's); 0xC210 Cannot understand (truncated or unreadable dataset, no
    SOP UIDs); 0xA700 Out of Resources (the node's disk, or a PostgreSQL database, failed: nothing was
    kept, the modality must retry).
    """
    request = event.request
    sop_class, sop_uid = str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
    if sop_class not in SUPPORTED_SOP_CLASSES:
        return SOP_CLASS_NOT_SUPPORTED
    calling, called = event.assoc.requestor.ae_title, event.assoc.acceptor.ae_title
    pseudo_uid = pseudo.derived_uid(sop_uid)
    try:
        path = event.dataset_path
        synced = fsyncs.submit(sync_file, path)
        problem = check_received(path, sop_class, sop_uid)
        synced.result()
    except OSError as exc:
        log.error("could not read a received instance from %s (%s); replied Out of Resources", calling, failure(exc))
        return OUT_OF_RESOURCES
    if problem is not None:
        status = DOES_NOT_MATCH if problem.understood else CANNOT_UNDERSTAND
        log.warning("refused instance %s from %s: %s (0x%04X)", pseudo_uid[-12:], calling, problem.reason, status)
        return status
    try:
        store.receive_file(path, pseudo_uid, sop_class, calling, called, announce, synced=True)
    except Exception as exc:
        log.error("could not store an instance from %s (%s); replied Out of Resources", calling, failure(exc))
        return OUT_OF_RESOURCES
    log.info("received instance %s from %s to %s", pseudo_uid[-12:], calling, called)
    return SUCCESS
