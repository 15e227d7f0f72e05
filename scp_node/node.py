"""The running node: Storage SCP + processing workers + one sender per destination + housekeeping."""
from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from digimask.config.settings import Destination, Settings
from digimask.pipeline.pseudonym import Pseudonymizer
from digimask.pipeline.runner import ProcessWorker
from digimask.scp_node.contexts import scp_contexts
from digimask.scp_node.forward import next_attempt, send_batch, set_nodelay
from digimask.scp_node.receive import handle_echo, handle_store
from digimask.scp_node.tls import server_context
from digimask.storage import db
from digimask.storage.store import Store

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    Path(settings.storage.data_dir).mkdir(parents=True, exist_ok=True)
    sessions = db.init(db.make_engine(settings.storage.db_url))
    return Store(Path(settings.storage.data_dir), sessions, settings.node.node_id)


class Sender(threading.Thread):
    def __init__(self, store: Store, settings: Settings, dest: Destination, stop: threading.Event) -> None:
        super().__init__(name=f"send-{dest.name}", daemon=True)
        self.store, self.settings, self.dest, self.stop = store, settings, dest, stop

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sent = self.send_due()
            except Exception:
                log.exception("sender %s failed; retrying", self.dest.name)
                sent = 0
            if not sent:
                self.stop.wait(self.settings.pipeline.poll_interval_s)

    def send_due(self) -> int:
        items = self.store.claim_deliveries(self.dest.name, self.settings.retry.batch, self.settings.pipeline.lease_s)
        if not items:
            return 0
        for outcome in send_batch(self.settings.node, self.dest, items):
            if outcome.ok:
                self.store.delivered(outcome.delivery.id, self.settings.storage.keep_originals_days)
            else:
                when = next_attempt(outcome.delivery, self.settings.retry)
                self.store.send_failed(outcome.delivery.id, outcome.error, when)
                log.warning("delivery %s to %s failed (%s); %s", outcome.delivery.id, self.dest.name, outcome.error,
                            f"retry at {when:%H:%M:%S}" if when else "giving up (max age)")
        return len(items)


class DigimaskNode:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        s = self.settings
        recovered = self.store.recover()
        if recovered:
            log.info("resuming %d unfinished instance(s)", recovered)
        for i in range(s.pipeline.workers):
            self.threads.append(ProcessWorker(self.store, s, self.stop_event, f"worker-{i}"))
        for dest in s.destinations:
            self.threads.append(Sender(self.store, s, dest, self.stop_event))
        self.threads.append(threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True))
        for t in self.threads:
            t.start()
        self.server = self._start_scp()
        log.info("%s listening on %s:%d as %s (node %s)", "digimask", s.node.host, s.node.port, s.node.ae_title, s.node.node_id)

    def _start_scp(self) -> ThreadedAssociationServer:
        s = self.settings
        ae = AE(ae_title=s.node.ae_title)
        ae.supported_contexts = scp_contexts()
        ae.require_calling_aet = list(s.node.allowed_calling_aes)
        ae.maximum_pdu_size = s.node.max_pdu
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = s.node.acse_timeout_s, s.node.dimse_timeout_s, s.node.network_timeout_s
        ae.maximum_associations = 64
        pseudo = Pseudonymizer(s.deid.key(), s.deid.uid_root)
        handlers = [
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, handle_store, [self.store, pseudo]),
            (evt.EVT_CONN_OPEN, set_nodelay),
        ]
        ssl_ctx = server_context(s.node.tls) if s.node.tls else None
        server = ae.start_server((s.node.host, s.node.port), block=False, evt_handlers=handlers, ssl_context=ssl_ctx)
        if s.node.allowed_ips:
            allowed = set(s.node.allowed_ips)

            def verify_request(request: socket.socket, client_address: tuple[str, int]) -> bool:
                ok = client_address[0] in allowed
                if not ok:
                    log.warning("refused connection from %s (not in node.allowed_ips)", client_address[0])
                return ok

            server.verify_request = verify_request  # socketserver closes refused sockets unprocessed
        return server

    def _housekeeping(self) -> None:
        keep = self.settings.storage.keep_originals_days
        while not self.stop_event.wait(60):
            if keep > 0:
                try:
                    n = self.store.purge_originals(keep)
                    if n:
                        log.info("deleted %d original(s) past the %.1f-day retention", n, keep)
                except Exception:
                    log.exception("housekeeping failed")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)
