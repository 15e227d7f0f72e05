#!/usr/bin/env python3
"""Intake throughput: DCMTK storescu -> digimask node (blank masker) vs -> DCMTK storescp, pynetdicom's
storescp, the node's network edge alone and Orthanc (a PACS that, like the node, stores and indexes what
it accepts), same run.

Prints images/s for each peer and the node's ratios (targets: >= 1.0x Orthanc, >= 0.5x storescp), over one
association and over K concurrent ones (K storescu processes, N/K images each: several modalities at
once, where the node's group commit shares one folder fsync among the associations), plus the node's
end-to-end rate (received, de-identified, masked and forwarded to a storescp), all on 127.0.0.1. Every
receiver gets one untimed image first. Orthanc runs with its defaults (1.10: ``SyncStorageArea`` true, an
fdatasync per stored file, no folder fsync; its SQLite index in WAL with ``synchronous=NORMAL``), the node
with its own (an fsync per file, one folder fsync per batch, the rows written right after Success with
``synchronous=NORMAL``; docs/durability.md). The node's edge is pynetdicom with the node's event-driven
acceptors (scp_node/acceptor.py) and chunked receive, answering Success at once: the node minus its own
work on each instance.

Measured 2026-12-03 on 2 shared cores (load 0.5 to 3.6 by ``uptime``, twelve runs of N = 300): node
118-276 images/s, 0.37-0.92x Orthanc (263-388/s, median about 0.6x) over one association; over four
(K = 4, the last three runs, with other instances than the first pass) 0.35-0.46x (node 188-229/s,
Orthanc 411-638/s); the node's edge 1.24-1.64x Orthanc, pynetdicom's storescp 0.83-1.10x. Target not
met; where the rest goes: README, Benchmarks.
Usage: .venv/bin/python benchmarks/intake.py [N] [SIDE_PX] [K]
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import dicom_factory as f  # noqa: E402
from digimask.config.settings import load  # noqa: E402
from digimask.storage.store import open_store  # noqa: E402
from peers import PEER_ENV, NodeProcess, Orthanc, free_port, node_config, wait_for, wait_port  # noqa: E402


def send(port: int, files: list[Path], aec: str) -> float:
    start = time.perf_counter()
    r = subprocess.run(["/usr/bin/storescu", "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), *map(str, files)],
                       capture_output=True, text=True, env=PEER_ENV)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"storescu to {aec} failed: {r.stderr[-400:]}")
    return elapsed


def send_parallel(port: int, files: list[Path], aec: str, k: int) -> float:
    """K associations at once, each a storescu process with every K-th file; seconds until the last ends."""
    times: list[float] = []
    threads = [threading.Thread(target=lambda i=i: times.append(send(port, files[i::k], aec))) for i in range(k)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(times) != k:
        sys.exit(f"a storescu to {aec} failed")
    return time.perf_counter() - start


# The node's network edge alone: pynetdicom with the node's acceptors (scp_node/acceptor.py) and chunked
# receive to a file, answering Success at once (no header check, no fsync, nothing kept)
EDGE = """
import sys, tempfile
from digimask.scp_node.acceptor import request_handler
from digimask.scp_node.contexts import scp_contexts
from digimask.scp_node.forward import set_nodelay
from pynetdicom import AE, _config, evt
_config.STORE_RECV_CHUNKED_DATASET = True
tempfile.tempdir = sys.argv[1]
ae = AE("EDGE")
ae.supported_contexts = scp_contexts()
ae.maximum_pdu_size = 0
server = ae.make_server(("127.0.0.1", int(sys.argv[2])), evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000),
                        (evt.EVT_CONN_OPEN, set_nodelay)], request_handler=request_handler(0.2))
server.serve_forever()
"""


def start_peer(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([*cmd, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=PEER_ENV)
    wait_port(port)
    return proc, port


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    side = int(sys.argv[2]) if len(sys.argv) > 2 else 184  # 184 x 184 x 3 ~ 100 KB
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = [f.save(f.op8(f"bench-{i}", rng.integers(0, 255, (side, side, 3), np.uint8), i), root / f"{i}.dcm")
                 for i in range(n)]
        # other instances for the K associations: a PACS may skip an instance it already holds (Orthanc
        # answers Success without storing it again), which the node never does
        files_k = [f.save(f.op8(f"bench-k-{i}", rng.integers(0, 255, (side, side, 3), np.uint8), i), root / f"k{i}.dcm")
                   for i in range(n)]
        size_kb = files[0].stat().st_size / 1024
        # one image first to every receiver, untimed: Orthanc opens its index, the node's pipeline process
        # finishes importing (about a second of CPU) and processes it before the node is timed
        warm = f.save(f.op8("bench-warm", rng.integers(0, 255, (side, side, 3), np.uint8), n), root / "warm.dcm")
        (root / "storescp").mkdir()
        scp, scp_port = start_peer(["/usr/bin/storescp", "-aet", "STORESCP", "-od", str(root / "storescp")])
        send(scp_port, [warm], "STORESCP")
        t_scp = send(scp_port, files, "STORESCP")
        # pynetdicom's own storescp (its reactors poll every millisecond), storing nothing
        pyn, pyn_port = start_peer([sys.executable, "-m", "pynetdicom", "storescp", "--ignore", "-aet", "PYNETDICOM"])
        send(pyn_port, [warm], "PYNETDICOM")
        t_pyn = send(pyn_port, files, "PYNETDICOM")
        pyn.send_signal(signal.SIGTERM)
        (root / "edge").mkdir()
        edge, edge_port = start_peer([sys.executable, "-c", EDGE, str(root / "edge")])
        send(edge_port, [warm], "EDGE")
        t_edge = send(edge_port, files, "EDGE")
        edge.send_signal(signal.SIGTERM)
        orthanc = Orthanc(root / "orthanc").start()
        try:
            send(orthanc.dicom_port, [warm], "ORTHANC")
            t_orthanc = send(orthanc.dicom_port, files, "ORTHANC")
            t_orthanc_k = send_parallel(orthanc.dicom_port, files_k, "ORTHANC", k)
        finally:
            orthanc.stop()

        node_port = free_port()
        config = node_config(root / "node", node_port, {"STORESCP": scp_port})
        node = NodeProcess(config, node_port).start()
        try:
            store = open_store(load(config))
            send(node_port, [warm], "DIGIMASK")
            wait_for(lambda: store.counts().get("done", 0) >= 1, 120, "the first image forwarded", interval=0.05)
            t_node = send(node_port, files, "DIGIMASK")
            start = time.perf_counter() - t_node
            wait_for(lambda: store.counts().get("done", 0) >= n + 1, 600, "all forwarded", interval=0.05)
            t_e2e = time.perf_counter() - start
            t_node_k = send_parallel(node_port, files_k, "DIGIMASK", k)
        finally:
            node.kill(signal.SIGTERM)
            scp.send_signal(signal.SIGTERM)
    print(f"{n} images of {size_kb:.0f} KB over one association, 127.0.0.1, {os.cpu_count()} CPU(s)")
    print(f"  DCMTK storescp intake : {n / t_scp:8.1f} images/s")
    print(f"  pynetdicom storescp   : {n / t_pyn:8.1f} images/s   ratio {t_scp / t_pyn:.2f}x storescp (stores nothing)")
    print(f"  the node's edge alone : {n / t_edge:8.1f} images/s   ratio {t_scp / t_edge:.2f}x storescp (its acceptors, "
          f"chunked receive; stores nothing)")
    print(f"  Orthanc 1.x intake    : {n / t_orthanc:8.1f} images/s   ratio {t_scp / t_orthanc:.2f}x storescp")
    print(f"  digimask node intake  : {n / t_node:8.1f} images/s   ratio {t_orthanc / t_node:.2f}x Orthanc (target >= 1.0x), "
          f"{t_scp / t_node:.2f}x storescp (target >= 0.5x), {t_edge / t_node:.2f}x its edge")
    print(f"  digimask end to end   : {n / t_e2e:8.1f} images/s   (received + de-identified + blank-masked + forwarded)")
    print(f"{k} concurrent associations, {n // k} images each")
    print(f"  Orthanc 1.x intake    : {n / t_orthanc_k:8.1f} images/s")
    print(f"  digimask node intake  : {n / t_node_k:8.1f} images/s   ratio {t_orthanc_k / t_node_k:.2f}x Orthanc (target >= 1.0x)")


if __name__ == "__main__":
    main()
