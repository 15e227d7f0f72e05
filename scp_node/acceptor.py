"""Event-driven association acceptors: pynetdicom's reactors, woken by what they wait for instead of polling.

pynetdicom 3.0.4 runs two threads per association that poll: the association's reactor sleeps 1 ms
before every look at its queue of DIMSE messages, the DUL's reactor 1 ms whenever it had nothing to do.
Every C-STORE waits for both (its request for the association thread, its response for the DUL thread):
about 1 ms per instance on one association, a third of what Orthanc takes to store one here. The DUL
thread blocks in ``select`` on its socket and on a wake-up socket that other threads' puts to its queues
write to, and the association thread blocks on an event that the queues it reads set; both still wake
every ``poll_s`` (``node.association_poll_s``) to check their timers (ARTIM, network timeout), as
pynetdicom's loops do on every pass. An idle association therefore costs 2 / ``poll_s`` wake-ups a
second instead of about 2,000 (10 idle associations over 10 s: 0.5-0.8 % of a core at 0.2 s,
pynetdicom's own 23-48 %; 2026-12-03).

The loops below are pynetdicom 3.0.4's (``Association._run_reactor``, ``DULServiceProvider.run_reactor``,
``RequestHandler._create_association``; the version is pinned in pyproject.toml) with only the sleeps
replaced; :func:`request_handler` is passed to pynetdicom's server as its documented ``request_handler``.
"""
from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from copy import deepcopy
from datetime import datetime
from typing import Any, cast

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.transport import AssociationSocket, RequestHandler

log = logging.getLogger(__name__)


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls ``wake`` after every put (``_put`` is Queue's documented extension point)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._wake()


class _DUL(DULServiceProvider):
    """pynetdicom's DUL provider; its reactor blocks on the peer's socket and on its own queues."""

    def __init__(self, assoc: "EventDrivenAssociation", poll_s: float) -> None:
        self._poll_s = poll_s
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        super().__init__(assoc)
        self.event_queue = _WakingQueue(self.wake)  # AssociationSocket puts Evt17 from other threads
        self.to_provider_queue = _WakingQueue(self.wake)  # what the association sends
        self.to_user_queue = _WakingQueue(assoc.wake)  # what the association reads

    @property
    def _kill_thread(self) -> bool:
        return self._killed

    @_kill_thread.setter
    def _kill_thread(self, value: bool) -> None:  # set by kill_dul, stop_dul and the association
        self._killed = value
        if value:
            self.wake()

    def wake(self) -> None:
        if threading.get_ident() == self.ident:  # the reactor's own puts (most events): it is awake
            return
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):  # full (a wake-up is pending anyway) or closed (reactor ended)
            pass

    def _wait(self) -> None:
        """Until the peer sent data, a queue was put to, or ``poll_s`` passed."""
        waiting: list[Any] = [self._wake_r]
        sock = self.socket.socket if self.socket is not None else None
        if sock is not None and sock.fileno() >= 0:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return  # decrypted bytes already buffered: select would not see them
            waiting.append(sock)
        try:
            ready, _, _ = select.select(waiting, [], [], self._poll_s)
        except (OSError, ValueError):  # the socket closed meanwhile; the next pass sees it
            return
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    def run_reactor(self) -> None:
        try:
            self._run()
        finally:
            self._wake_w.close()
            self._wake_r.close()

    def _run(self) -> None:
        """pynetdicom 3.0.4's ``DULServiceProvider.run_reactor`` with ``self._wait()`` for its sleep."""
        self._idle_timer.start()
        self.socket = cast(AssociationSocket, self.socket)
        sleep = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                sleep = True
            if sleep:
                self._wait()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                log.error("exception in the DUL reactor, aborting the association")
                log.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                self.socket.send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue
            self.state_machine.do_action(event)
            sleep = False


class EventDrivenAssociation(Association):
    """An acceptor whose reactor waits for a DIMSE message, a release or an abort instead of polling."""

    def __init__(self, ae: Any, mode: str, poll_s: float) -> None:
        self._poll_s = poll_s
        self._wake = threading.Event()
        super().__init__(ae, mode)
        self.dul = _DUL(self, poll_s)
        # the timeouts pynetdicom's __init__ set on the DUL it made (acse: ARTIM, network: idle timer)
        self.acse_timeout, self.network_timeout = self.acse_timeout, self.network_timeout
        self.dimse.msg_queue = _WakingQueue(self.wake)

    @property
    def _kill(self) -> bool:
        return self._killed

    @_kill.setter
    def _kill(self, value: bool) -> None:
        self._killed = value
        if value:
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _run_reactor(self) -> None:
        """pynetdicom 3.0.4's ``Association._run_reactor`` with a wait on ``_wake`` for its 1 ms sleep."""
        self._is_paused = False
        while not self._kill:
            self._wake.wait(self._poll_s)
            self._wake.clear()  # before looking: a put from now on sets it again
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
                self._wake.set()  # one message per pass, as pynetdicom: look again at once
            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                log.debug("association released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
                log.debug("association aborted%s", " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else "")
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return
            if not self.dul.is_alive():
                self.kill()
                return
            if self.dul.idle_timer_expired():
                log.error("network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


def request_handler(poll_s: float) -> type[RequestHandler]:
    """pynetdicom's request handler, making :class:`EventDrivenAssociation` acceptors."""

    class EventDrivenRequestHandler(RequestHandler):
        def _create_association(self) -> Association:
            """pynetdicom 3.0.4's ``RequestHandler._create_association`` with the acceptor class changed."""
            assoc = EventDrivenAssociation(self.ae, MODE_ACCEPTOR, poll_s)
            assoc._server = self.server
            assoc.name = f"AcceptorThread@{datetime.strftime(datetime.now(), '%Y%m%d%H%M%S')}"
            assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
            assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
            assoc.acceptor.ae_title = self.server.ae_title
            assoc.acceptor.address_info = self.local
            assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
            assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
            assoc.acceptor.supported_contexts = deepcopy(self.server.contexts)
            assoc.requestor.address_info = self.remote
            for event in self.server._handlers:
                if event.is_intervention and self.server._handlers[event]:
                    assoc.bind(event, *self.server._handlers[event])
                elif isinstance(event, evt.NotificationEvent):
                    for handler in self.server._handlers[event]:
                        assoc.bind(event, handler[0], handler[1])
            return assoc

    return EventDrivenRequestHandler
