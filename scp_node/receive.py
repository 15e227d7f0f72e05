"""C-STORE and C-ECHO handlers (PS3.4 Annex B): persist the bytes, reply with a status, do nothing slow."""
from __future__ import annotations

import logging
from collections.abc import Callable

from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.pipeline.dicom.sop import SUPPORTED_SOP_CLASSES
from digimask.storage.store import Store
from pynetdicom.events import Event

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources -> the modality keeps it and retries
SOP_CLASS_NOT_SUPPORTED = 0x0122


def handle_echo(event: Event) -> int:
    return SUCCESS


def handle_store(event: Event, store: Store, pseudo: Pseudonymizer, announce: Callable[[int], None] | None = None) -> int:
    """Return Success only once the instance is fsynced on disk and committed in the database.

    Statuses: 0x0000 Success; 0x0122 SOP Class not supported; 0xA700 Out of Resources (disk or
    database failure: nothing was kept, the modality must retry).
    """
    request = event.request
    sop_class = str(request.AffectedSOPClassUID)
    if sop_class not in SUPPORTED_SOP_CLASSES:
        return SOP_CLASS_NOT_SUPPORTED
    calling = event.assoc.requestor.ae_title
    pseudo_uid = pseudo.derived_uid(str(request.AffectedSOPInstanceUID))
    try:
        data = event.encoded_dataset(include_meta=True)
        iid = store.receive(data, pseudo_uid, sop_class, calling, event.assoc.acceptor.ae_title)
    except Exception:
        log.exception("could not store an instance from %s; replied Out of Resources", calling)
        return OUT_OF_RESOURCES
    log.info("received instance %s (%s) from %s", iid, pseudo_uid[-12:], calling)
    if announce is not None:
        announce(iid)
    return SUCCESS
