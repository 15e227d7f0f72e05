"""The running node: the Storage SCP in the main process; workers, senders and housekeeping in a pipeline process."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import socket
import threading
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import TYPE_CHECKING

from digimask.config.settings import Destination, Settings
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.scp_node.contexts import scp_contexts
from digimask.scp_node.forward import send_batch, set_nodelay, settle
from digimask.scp_node.receive import handle_echo, handle_store
from digimask.scp_node.tls import server_context
from digimask.scp_node.worker import ProcessWorker
from digimask.storage.store import Store, open_store
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

if TYPE_CHECKING:
    from digimask.scp_node.console.server import ConsoleServer
    from digimask.scp_node.tasks import Dispatcher

log = logging.getLogger(__name__)


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
            settle(self.store, self.settings, self.dest, outcome)
        return len(items)


def run_pipeline(settings: Settings, stop: EventType, parent: int) -> None:
    """The pipeline process: processing workers and one sender per destination, until ``stop``.

    It runs apart from the SCP process so that CPU-bound masking never holds the GIL that the
    association threads need: intake latency stays that of the network edge alone.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    store = open_store(settings)
    local_stop = threading.Event()
    threading.Thread(target=_exit_with_parent, args=(parent, local_stop), name="parent-watch", daemon=True).start()
    threads: list[threading.Thread] = [
        ProcessWorker(store, settings, local_stop, f"worker-{i}") for i in range(settings.pipeline.workers)
    ]
    threads += [Sender(store, settings, dest, local_stop) for dest in settings.destinations]
    threads.append(threading.Thread(target=_housekeeping, args=(store, settings, local_stop), name="housekeeping", daemon=True))
    for t in threads:
        t.start()
    while not local_stop.is_set() and not stop.wait(0.5):
        pass
    local_stop.set()
    for t in threads:
        t.join(timeout=30)


def _exit_with_parent(parent: int, stop: threading.Event) -> None:
    """A pipeline process outliving a killed node would race the restarted one: stop with the parent."""
    while True:
        if os.getppid() != parent:
            log.error("node process %d is gone; pipeline process stopping", parent)
            stop.set()
        if stop.wait(0.5):
            return


def _housekeeping(store: Store, settings: Settings, stop: threading.Event) -> None:
    keep = settings.storage.keep_originals_days
    while not stop.wait(60):
        if keep > 0:
            try:
                n = store.purge_originals(keep)
                if n:
                    log.info("deleted %d original(s) past the %.1f-day retention", n, keep)
            except Exception:
                log.exception("housekeeping failed")


class DigimaskNode:
    """The SCP in this process; the pipeline in a child process that is restarted if it dies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self._mp = mp.get_context("spawn")  # never fork a process that may hold GL or DB handles
        self._stop = self._mp.Event()
        self._child: BaseProcess | None = None
        self._watchdog: threading.Thread | None = None
        self._dispatcher: Dispatcher | None = None
        self._local_stop = threading.Event()
        self.server: ThreadedAssociationServer | None = None
        self._console: ConsoleServer | None = None

    def start(self) -> None:
        s = self.settings
        if s.scale.celery_broker_url:  # scale-out: `digimask worker` processes run the pipeline
            from digimask.scp_node.tasks import Dispatcher

            self.store.recover()
            self._dispatcher = Dispatcher(self.store, s, self._local_stop)
            self._dispatcher.start()
            threading.Thread(target=_housekeeping, args=(self.store, s, self._local_stop), daemon=True).start()
        else:
            self._start_pipeline()
            self._watchdog = threading.Thread(target=self._watch, name="watchdog", daemon=True)
            self._watchdog.start()
        self.server = self._start_scp()
        log.info("digimask listening on %s:%d as %s (node %s)", s.node.host, s.node.port, s.node.ae_title, s.node.node_id)
        from digimask.scp_node.console.server import start_console  # the console: its own port, beside the SCP

        self._console = start_console(s, self.store)

    def _start_pipeline(self) -> None:
        recovered = self.store.recover()  # the previous pipeline process (if any) is gone: take its claims back
        if recovered:
            log.info("resuming %d unfinished instance(s)", recovered)
        # the parent's PID, not the child's getppid(): the node may die while the child is still starting
        self._child = self._mp.Process(target=run_pipeline, args=(self.settings, self._stop, os.getpid()),
                                       name="digimask-pipeline")
        self._child.start()

    def _watch(self) -> None:
        while not self._stop.wait(1):
            if self._child is not None and not self._child.is_alive():
                log.error("pipeline process exited (code %s); restarting it", self._child.exitcode)
                self._start_pipeline()

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
            (evt.EVT_C_STORE, handle_store, [open_store(s, busy_timeout_s=0.001), pseudo,
                                             self._dispatcher.announce if self._dispatcher else None]),
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

    def stop(self) -> None:
        if self._console is not None:
            self._console.stop()
        if self.server is not None:
            self.server.shutdown()
        self._local_stop.set()
        self._stop.set()
        if self._child is not None:
            self._child.join(timeout=60)
