"""Event-driven acceptors (scp_node/acceptor.py): nothing a peer sends waits for the poll, the timers still
fire, and idle associations do not spin."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from digimask.scp_node.acceptor import EventDrivenAssociation, request_handler
from peers import free_port
from pynetdicom import AE, evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

VERIFICATION = "1.2.840.10008.1.1"


def serve(poll_s: float | None, network_timeout_s: float = 60) -> tuple[ThreadedAssociationServer, int]:
    """A C-ECHO SCP with event-driven acceptors polling every ``poll_s``, or pynetdicom's own (None)."""
    ae = AE("SCP")
    ae.add_supported_context(VERIFICATION)
    ae.network_timeout = network_timeout_s
    port = free_port()
    handler = RequestHandler if poll_s is None else request_handler(poll_s)
    server = ae.make_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_ECHO, lambda event: 0x0000)],
                            server_class=ThreadedAssociationServer, request_handler=handler)
    ae._servers.append(server)  # as AE.start_server does, so that server.shutdown() finds it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


@pytest.fixture
def scu() -> Iterator[AE]:
    ae = AE("SCU")
    ae.add_requested_context(VERIFICATION)
    yield ae
    ae.shutdown()


def test_requests_and_release_do_not_wait_for_the_poll(scu: AE) -> None:
    server, port = serve(poll_s=2.0)
    try:
        start = time.monotonic()
        assoc = scu.associate("127.0.0.1", port)
        assert assoc.is_established
        assert isinstance(server.active_associations[0], EventDrivenAssociation)
        statuses = [assoc.send_c_echo().Status for _ in range(20)]
        assoc.release()
        assert statuses == [0] * 20 and assoc.is_released
        assert time.monotonic() - start < 2.0  # 22 exchanges; one wait for the poll alone would take 2 s
        deadline = time.monotonic() + 2.0
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.active_associations  # both threads ended once the peer closed, before any poll
    finally:
        server.shutdown()


def test_an_abort_by_the_peer_ends_the_association(scu: AE) -> None:
    server, port = serve(poll_s=2.0)
    try:
        assoc = scu.associate("127.0.0.1", port)
        acceptor = server.active_associations[0]
        assoc.abort()
        acceptor.join(1.0)
        assert not acceptor.is_alive() and acceptor.is_aborted
    finally:
        server.shutdown()


def test_the_network_timeout_still_fires_on_an_idle_association(scu: AE) -> None:
    server, port = serve(poll_s=0.05, network_timeout_s=0.3)
    try:
        assoc = scu.associate("127.0.0.1", port)
        acceptor = server.active_associations[0]
        acceptor.join(2.0)
        assert not acceptor.is_alive() and acceptor.is_aborted  # the node's default answer: A-ABORT
        assoc.abort()
    finally:
        server.shutdown()


HOLD = """
import sys, time
from pynetdicom import AE
ae = AE("SCU")
ae.add_requested_context("1.2.840.10008.1.1")
assocs = [ae.associate("127.0.0.1", int(sys.argv[1])) for _ in range(int(sys.argv[2]))]
print(all(a.is_established for a in assocs), flush=True)
sys.stdin.read()
for a in assocs:
    a.release()
"""


def cpu_while_idle(poll_s: float | None, k: int = 10, seconds: float = 2.0) -> float:
    """Seconds of CPU this process (the acceptors alone: the requestors are another process) spends per
    second while ``k`` associations to it sit idle."""
    server, port = serve(poll_s)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(port), str(k)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        time.sleep(0.2)
        c0, t0 = sum(os.times()[:2]), time.monotonic()
        time.sleep(seconds)
        return (sum(os.times()[:2]) - c0) / (time.monotonic() - t0)
    finally:
        holder.communicate("", timeout=30)
        server.shutdown()


def test_idle_associations_cost_a_fraction_of_pynetdicoms_polling() -> None:
    stock, event_driven = cpu_while_idle(None), cpu_while_idle(0.05)
    assert event_driven < stock / 4, (stock, event_driven)
