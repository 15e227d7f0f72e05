"""The running node: the Storage SCP in the main process; workers, senders and housekeeping in a pipeline process."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import TYPE_CHECKING

from digimask.config.settings import IDENTIFIABLE_MASKERS, Destination, KeyFileError, Settings
from digimask.pipeline.deid.pseudonym import Pseudonymizer
from digimask.scp_node.acceptor import request_handler
from digimask.scp_node.contexts import scp_contexts
from digimask.scp_node.forward import echo, send_batch, set_nodelay, settle
from digimask.scp_node.logs import configure as configure_logging
from digimask.scp_node.logs import failure
from digimask.scp_node.receive import handle_echo, handle_rejected, handle_requested, handle_store
from digimask.scp_node.tls import server_context
from digimask.scp_node.worker import ProcessWorker
from digimask.storage.store import Store, open_store
from pynetdicom import AE, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

if TYPE_CHECKING:
    from digimask.scp_node.console.server import ConsoleServer
    from digimask.scp_node.tasks import Dispatcher

log = logging.getLogger(__name__)


class Sender(threading.Thread):
    """One destination's queue. After a batch that reached no association the destination is down: it
    is probed with C-ECHO every ``retry.probe_interval_s`` and, once it answers, its whole backlog is made
    due and sent at once instead of waiting out each delivery's backoff."""

    def __init__(self, store: Store, settings: Settings, dest: Destination, stop: threading.Event) -> None:
        super().__init__(name=f"send-{dest.name}", daemon=True)
        self.store, self.settings, self.dest, self.stop = store, settings, dest, stop
        self.down = False

    def run(self) -> None:
        next_probe = 0.0
        while not self.stop.is_set():
            try:
                if self.down and time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + self.settings.retry.probe_interval_s
                    self.probe()
                sent = self.send_due()
            except Exception as exc:
                log.error("sender %s failed (%s); retrying", self.dest.name, failure(exc))
                sent = 0
            if not sent:
                self.stop.wait(self.settings.pipeline.poll_interval_s)

    def probe(self) -> None:
        if echo(self.settings.node, self.dest):
            n = self.store.retry_pending(self.dest.name)
            self.down = False
            log.info("destination %s answers C-ECHO again: sending its backlog of %d now", self.dest.name, n)

    def send_due(self) -> int:
        items = self.store.claim_deliveries(self.dest.name, self.settings.retry.batch, self.settings.pipeline.lease_s)
        if not items:
            return 0
        outcomes = send_batch(self.settings.node, self.dest, items)
        if not any(o.reached for o in outcomes) and not self.down:
            self.down = True
            log.warning("destination %s unreachable: probing it with C-ECHO every %.0f s", self.dest.name,
                        self.settings.retry.probe_interval_s)
        for outcome in outcomes:
            settle(self.store, self.settings, self.dest, outcome)
        return len(items) if not self.down else 0


def run_pipeline(settings: Settings, stop: EventType, parent: int, verbose: bool = False) -> None:
    """The pipeline process: processing workers and one sender per destination, until ``stop``.

    It runs apart from the SCP process so that CPU-bound masking never holds the GIL that the
    association threads need: intake latency stays that of the network edge alone.
    """
    # a signal to the whole process group (systemd, timeout, kill -- -PGID) must not end this process
    # while it waits on ``stop``: the parent's Event.set() would then block for ever in notify()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(verbose)
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


def _housekeeping(store: Store, settings: Settings, stop: threading.Event, interval_s: float = 60) -> None:
    st = settings.storage
    while not stop.wait(interval_s):
        try:
            if st.keep_originals_days > 0:
                n = store.purge_originals(st.keep_originals_days)
                if n:
                    log.info("deleted %d original(s) past the %.1f-day retention", n, st.keep_originals_days)
            n = store.purge_stale(st.purge_quarantined_days, st.purge_failed_days)
            if n:
                log.info("deleted %d quarantined or failed original(s) past their retention", n)
        except Exception as exc:
            log.error("housekeeping failed (%s)", failure(exc))


def _allow_list_server(allowed: frozenset[str]) -> type[ThreadedAssociationServer]:
    """A server class whose ``verify_request`` refuses other addresses: in place before the first accept
    (socketserver closes a refused socket before any DICOM is exchanged)."""

    class AllowListServer(ThreadedAssociationServer):
        def verify_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int]) -> bool:  # type: ignore[override]
            if client_address[0] in allowed:
                return True
            log.warning("refused connection from %s (not in node.allowed_ips)", client_address[0])
            return False

    return AllowListServer


class UnsafeConfiguration(Exception):
    """The node will not serve with this configuration; the message says why and what to set."""


def check_safe(settings: Settings) -> None:
    """Refuse to serve identifiable output unless configured, or with an unsafe key file; warn when allowed."""
    masker = settings.pixels.masker
    if masker in IDENTIFIABLE_MASKERS:
        if not settings.pixels.allow_identifiable_output:
            raise UnsafeConfiguration(f"pixels.masker = {masker!r} leaves the face recognisable (not de-identifying); "
                                      "set pixels.allow_identifiable_output = true to serve it anyway")
        log.warning("pixels.masker = %r: outputs keep a recognisable face (RecognizableVisualFeatures YES), "
                    "as pixels.allow_identifiable_output allows", masker)
    try:
        settings.deid.key()
    except KeyFileError as exc:
        raise UnsafeConfiguration(f"deid.secret_file: {exc}") from None


class DigimaskNode:
    """The SCP in this process; the pipeline in a child process that is restarted if it dies."""

    def __init__(self, settings: Settings, verbose: bool = False) -> None:
        """Raises :class:`UnsafeConfiguration` (an identifiable masker not allowed, an unsafe key file)."""
        check_safe(settings)
        self.settings, self.verbose = settings, verbose
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
        self.store.clear_incoming()
        self.server = self._start_scp()
        log.info("digimask listening on %s:%d as %s (node %s)", s.node.host, s.node.port, s.node.ae_title, s.node.node_id)
        from digimask.scp_node.console.server import start_console  # the console: its own port, beside the SCP

        self._console = start_console(s, self.store)

    def _start_pipeline(self) -> None:
        recovered = self.store.recover()  # the previous pipeline process (if any) is gone: take its claims back
        if recovered:
            log.info("resuming %d unfinished instance(s)", recovered)
        # the parent's PID, not the child's getppid(): the node may die while the child is still starting
        self._child = self._mp.Process(target=run_pipeline, args=(self.settings, self._stop, os.getpid(), self.verbose),
                                       name="digimask-pipeline")
        self._child.start()

    def _watch(self) -> None:
        while not self._stop.wait(1):
            if self._child is not None and not self._child.is_alive():
                log.error("pipeline process exited (code %s); restarting it", self._child.exitcode)
                self._start_pipeline()

    def _start_scp(self) -> ThreadedAssociationServer:
        s = self.settings
        # chunked receive: pynetdicom writes each stream to a temporary file, in this node's incoming
        # folder (the inbox's file system), which the handler renames into the inbox once it is checked
        _config.STORE_RECV_CHUNKED_DATASET = True
        tempfile.tempdir = str(self.store.incoming)
        ae = AE(ae_title=s.node.ae_title)
        ae.supported_contexts = scp_contexts()
        ae.require_calling_aet = list(s.node.allowed_calling_aes)
        ae.require_called_aet = True  # against the AE title handle_requested picked from node.ae_titles
        ae.maximum_pdu_size = s.node.max_pdu
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = s.node.acse_timeout_s, s.node.dimse_timeout_s, s.node.network_timeout_s
        ae.maximum_associations = s.node.max_associations
        pseudo = Pseudonymizer(s.deid.key(), s.deid.uid_root)
        handlers = [
            (evt.EVT_REQUESTED, handle_requested, [frozenset(s.node.ae_titles)]),
            (evt.EVT_REJECTED, handle_rejected),
            (evt.EVT_C_ECHO, handle_echo),
            # a thread per association at most for the files' fsyncs (started as needed)
            (evt.EVT_C_STORE, handle_store, [open_store(s, busy_timeout_s=0.001), pseudo,
                                             ThreadPoolExecutor(s.node.max_associations, "intake-fsync"),
                                             self._dispatcher.announce if self._dispatcher else None]),
            (evt.EVT_CONN_OPEN, set_nodelay),
        ]
        ssl_ctx = server_context(s.node.tls) if s.node.tls else None
        server_class = _allow_list_server(frozenset(s.node.allowed_ips)) if s.node.allowed_ips else ThreadedAssociationServer
        server = ae.make_server((s.node.host, s.node.port), evt_handlers=handlers, ssl_context=ssl_ctx,
                                server_class=server_class, request_handler=request_handler(s.node.association_poll_s))
        ae._servers.append(server)  # as AE.start_server does, so that server.shutdown() finds it
        threading.Thread(target=server.serve_forever, name="scp", daemon=True).start()
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
