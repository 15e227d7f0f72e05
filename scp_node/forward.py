"""The Storage SCU: send masked instances to a destination PACS, one association per batch.

Nothing is marked delivered unless the destination answered Success or a Warning (PS3.4 B.2.3: the
instance was stored). A refusal that will not change on resending (0xA9xx Data Set does not match SOP
Class, 0xCxxx Cannot understand, 0x01xx such as SOP Class not supported) fails the delivery at once,
with the status in the reason; so does 0xA7xx Out of Resources when the same association stored other
instances (the refusal is about this one, as Orthanc's 0xA700 for an invalid header). Anything else
(no association, a lost one, 0xA7xx for everything) is a retry with exponential backoff until
``max_age_s``; the sender then probes the destination with C-ECHO and sends the backlog once it answers.
"""
from __future__ import annotations

import datetime as dt
import logging
import socket
from dataclasses import dataclass

from digimask.config.settings import Destination, Node, Retry, Settings
from digimask.scp_node.contexts import scu_contexts
from digimask.scp_node.tls import client_context
from digimask.storage.models import utcnow
from digimask.storage.store import ClaimedDelivery, Store
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

log = logging.getLogger(__name__)
_RESOURCES = range(0xA700, 0xA800)  # Refused: Out of Resources (PS3.4 B.2.3)
VERIFICATION = "1.2.840.10008.1.1"


@dataclass(frozen=True)
class Outcome:
    delivery: ClaimedDelivery
    ok: bool
    error: str = ""
    permanent: bool = False  # resending the same instance cannot succeed: fail the delivery now
    reached: bool = True  # an association was established (False: the destination looks down)


def set_nodelay(event: evt.Event) -> None:
    """Small DIMSE messages otherwise wait ~40 ms for Nagle's algorithm on every exchange."""
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def keep_responses(assoc: Association) -> None:
    """Give a response that ``assoc``'s reactor takes back to the request waiting for it.

    pynetdicom 3.0.4's requestor keeps its association reactor polling the DIMSE queue; ``send_c_store``
    and ``send_c_echo`` pause it (clear its checkpoint, wait for ``_is_paused``), but ``_is_paused`` is
    already True from the reactor's previous pass when its wait on the checkpoint has just returned. In that
    instant the reactor can take the response off the queue, log "Received unexpected C-STORE service
    message", drop it, and the send waits out the DIMSE timeout (60 s: 5 of 12 benchmark runs, and 2 of 3
    here, stalled so). A response taken while a send is under way (the checkpoint is clear) is put back on
    the queue that send reads; anything else is served as pynetdicom would."""
    serve = assoc._serve_request

    def serve_or_return(msg, context_id: int) -> None:  # type: ignore[no-untyped-def]
        if msg.is_valid_response and not assoc._reactor_checkpoint.is_set():
            assoc.dimse.msg_queue.put((context_id, msg))
        else:
            serve(msg, context_id)

    assoc._serve_request = serve_or_return  # the reactor looks it up on every message


def send_batch(node: Node, dest: Destination, items: list[ClaimedDelivery]) -> list[Outcome]:
    """Send ``items`` over one association; returns one outcome per item, never raises."""
    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = node.acse_timeout_s, node.dimse_timeout_s, node.network_timeout_s
    ae.requested_contexts = scu_contexts({i.sop_class_uid for i in items})
    tls_args = (client_context(dest.tls), dest.tls_server_name or dest.host) if dest.tls else None
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args,
                             evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay)])
    except Exception as exc:  # TLS and socket errors surface here
        return [Outcome(i, False, f"cannot connect: {type(exc).__name__}", reached=False) for i in items]
    if not assoc.is_established:
        why = "association rejected by" if assoc.is_rejected else "no association (refused, unreachable or aborted) with"
        return [Outcome(i, False, f"{why} {dest.ae_title}@{dest.host}:{dest.port}", reached=False) for i in items]
    keep_responses(assoc)
    outcomes: list[Outcome] = []
    refused: list[tuple[ClaimedDelivery, int]] = []
    try:
        for item in items:
            if not assoc.is_established:
                outcomes.append(Outcome(item, False, "association lost"))
                continue
            try:
                status = assoc.send_c_store(item.path)
            except (OSError, ValueError) as exc:
                outcomes.append(Outcome(item, False, f"cannot send: {type(exc).__name__}"))
                continue
            code = int(status.Status) if status and "Status" in status else None
            if code is None:
                outcomes.append(Outcome(item, False, "no response"))
            elif code_to_category(code) in (STATUS_SUCCESS, STATUS_WARNING):  # PS3.4 B.2.3: stored
                outcomes.append(Outcome(item, True))
            elif code in _RESOURCES:
                refused.append((item, code))  # decided once the whole batch is known
            else:
                outcomes.append(Outcome(item, False, f"refused: status 0x{code:04X}", permanent=True))
    finally:
        if assoc.is_established:
            assoc.release()
    others_stored = any(o.ok for o in outcomes)
    for item, code in refused:
        outcomes.append(Outcome(item, False, f"refused: status 0x{code:04X}" + ("" if others_stored else " (for every instance)"),
                                permanent=others_stored))
    return outcomes


def echo(node: Node, dest: Destination) -> bool:
    """C-ECHO ``dest``: does it accept an association and answer Success now?"""
    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = node.acse_timeout_s, node.dimse_timeout_s, node.network_timeout_s
    ae.add_requested_context(VERIFICATION)
    tls_args = (client_context(dest.tls), dest.tls_server_name or dest.host) if dest.tls else None
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    except Exception:  # TLS and socket errors: not answering
        return False
    if not assoc.is_established:
        return False
    keep_responses(assoc)
    try:
        status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == 0x0000
    finally:
        if assoc.is_established:
            assoc.release()


def settle(store: Store, settings: Settings, dest: Destination, outcome: Outcome) -> dt.datetime | None:
    """Record one send's outcome; returns when to try again (``None``: delivered, or given up)."""
    if outcome.ok:
        store.delivered(outcome.delivery, settings.storage.keep_originals_days)
        return None
    when = None if outcome.permanent else next_attempt(outcome.delivery, settings.retry)
    store.send_failed(outcome.delivery, outcome.error, when)
    log.warning("delivery %s to %s failed (%s); %s", outcome.delivery.id, dest.name, outcome.error,
                f"retry at {when:%H:%M:%S}" if when else "failed for good" if outcome.permanent else "giving up (max age)")
    return when


def next_attempt(item: ClaimedDelivery, retry: Retry, now: dt.datetime | None = None) -> dt.datetime | None:
    """When to try again, or ``None`` once the item is older than ``max_age_s`` (give up, visibly)."""
    now = now or utcnow()
    if (now - item.created_at).total_seconds() >= retry.max_age_s:
        return None
    delay = min(retry.max_delay_s, retry.initial_delay_s * 2 ** item.attempts)
    return now + dt.timedelta(seconds=delay)
