"""Administrator commands for the node: serve, worker, check-config, echo, deid, queue, quarantine."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from digimask.config.settings import ConfigError, Settings, load

CONFIG_HELP = "configuration file (TOML), e.g. examples/digimask.toml"


def _settings(path: Path) -> Settings | None:
    try:
        return load(path)
    except ConfigError as exc:
        print(f"invalid configuration {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    s = _settings(args.config)
    if s is None:
        return 2
    print(f"{args.config}: OK (AE {s.node.ae_title} on {s.node.host}:{s.node.port}, masker {s.pixels.masker}, "
          f"{len(s.destinations)} destination(s), {len(s.routes)} route(s))")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from digimask.scp_node.node import DigimaskNode, UnsafeConfiguration
    from digimask.storage.db import SchemaMismatch

    s = _settings(args.config)
    if s is None:
        return 2
    try:
        node = DigimaskNode(s, verbose=args.verbose)
    except (SchemaMismatch, UnsafeConfiguration) as exc:
        print(exc, file=sys.stderr)
        return 2
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        node.start()
    except OSError as exc:
        print(f"cannot listen on {s.node.host}:{s.node.port}: {exc.strerror}", file=sys.stderr)
        node.stop()
        return 1
    stopped.wait()
    node.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker for scale-out (``scale.celery_broker_url``): runs the pipeline and the senders."""
    s = _settings(args.config)
    if s is None:
        return 2
    if not s.scale.celery_broker_url:
        print("scale.celery_broker_url is not set: the node runs its pipeline itself (no workers needed)", file=sys.stderr)
        return 2
    from digimask.scp_node.node import UnsafeConfiguration, check_safe
    from digimask.scp_node.tasks import configure

    try:
        check_safe(s)
    except UnsafeConfiguration as exc:
        print(exc, file=sys.stderr)
        return 2

    # threads, not forked processes: a GL context must never cross a fork, and each thread owns its own
    configure(s).worker_main(["worker", "--pool=threads", f"--concurrency={s.pipeline.workers}",
                              "-Q", s.scale.queue, "--loglevel=INFO", "--without-gossip", "--without-mingle"])
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from pynetdicom import AE

    s = _settings(args.config)
    if s is None:
        return 2
    names = [d.name for d in s.destinations]
    if args.destination not in names:
        print(f"unknown destination {args.destination!r}; configured: {', '.join(names) or '(none)'}", file=sys.stderr)
        return 2
    dest = s.destination(args.destination)
    ae = AE(ae_title=s.node.ae_title)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        print(f"{dest.name}: no association with {dest.ae_title}@{dest.host}:{dest.port}", file=sys.stderr)
        return 1
    status = assoc.send_c_echo()
    assoc.release()
    ok = bool(status) and status.Status == 0
    print(f"{dest.name}: C-ECHO {'Success' if ok else 'failed'}")
    return 0 if ok else 1


def cmd_deid(args: argparse.Namespace) -> int:
    """Header de-identification of one file with the configuration (pixels blanked), without routing."""
    from digimask.pipeline.dicom.read import read
    from digimask.pipeline.errors import Quarantined
    from digimask.pipeline.mask.maskers import BlankMasker
    from digimask.pipeline.process import Processor

    s = _settings(args.config)
    if s is None:
        return 2
    try:
        out = Processor(s, BlankMasker()).process(read(args.input), route=False).dataset
    except Quarantined as exc:
        print(f"{args.input}: would be quarantined: {exc.reason}", file=sys.stderr)
        return 1
    print("note: 'deid' blanks the pixels; 'digimask mask' applies the configured masker", file=sys.stderr)
    out.save_as(args.output, enforce_file_format=True)
    print(f"wrote {args.output}")
    return 0


def _store(config: Path):  # type: ignore[no-untyped-def]
    """The node's store for an administrator command, or None (reasons printed) if the config is invalid."""
    from digimask.storage.db import SchemaMismatch
    from digimask.storage.store import open_store

    s = _settings(config)
    if s is None:
        return None
    try:
        return open_store(s)
    except SchemaMismatch as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_queue(args: argparse.Namespace) -> int:
    from digimask.storage.models import Send

    store = _store(args.config)
    if store is None:
        return 2
    if args.action == "retry":
        where = f" to {args.destination}" if args.destination else ""
        print(f"requeued {store.retry_failed(args.destination, args.id)} failed deliver(y/ies){where}")
        if args.pending:
            print(f"{store.retry_pending(args.destination)} pending deliver(y/ies){where} due now")
        return 0
    state = Send(args.state) if args.state else None
    print(f"{'ID':>6} {'INSTANCE':>8} {'DESTINATION':<16} {'STATE':<8} {'TRIES':>5} NEXT/DONE            LAST ERROR")
    for d in store.deliveries(state, args.limit):
        when = d.done_at or d.next_attempt_at
        print(f"{d.id:>6} {d.instance_id:>8} {d.destination:<16} {d.state:<8} {d.attempts:>5} {when:%Y-%m-%d %H:%M:%S}  {d.last_error or ''}")
    print("instances: " + ", ".join(f"{k}={v}" for k, v in sorted(store.counts().items())))
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from digimask.storage.models import State

    store = _store(args.config)
    if store is None:
        return 2
    if args.action == "list":
        print(f"{'ID':>6} {'RECEIVED':<19} {'FROM':<16} REASON")
        for inst in store.instances(State.QUARANTINED, args.limit):
            print(f"{inst.id:>6} {inst.received_at:%Y-%m-%d %H:%M:%S} {inst.calling_ae:<16} {inst.reason}")
        return 0
    if args.id is None:
        print(f"quarantine {args.action} needs an instance ID", file=sys.stderr)
        return 2
    if args.action == "delete":
        from digimask.storage.overview import delete_quarantined

        if not args.reason:
            print("quarantine delete needs --reason", file=sys.stderr)
            return 2
        if delete_quarantined(store, args.id, args.reason, "command line"):
            print(f"instance {args.id}: original deleted ({args.reason})")
            return 0
        print(f"instance {args.id} is not in quarantine, or its original is already gone", file=sys.stderr)
        return 1
    if args.action == "release":
        if store.release(args.id):
            print(f"instance {args.id} released: it goes through the pipeline again")
            return 0
        print(f"instance {args.id} is not in quarantine", file=sys.stderr)
        return 1
    found = store.instance(args.id)
    if found is None:
        print(f"no instance {args.id}", file=sys.stderr)
        return 1
    inst, events, deliveries = found
    print(f"instance {inst.id}: {inst.state}  pseudonymous UID {inst.pseudo_uid or '-'}  patient {inst.pseudo_patient_id or '-'}")
    print(f"  SOP class {inst.sop_class_uid}  from {inst.calling_ae} to {inst.called_ae}")
    print(f"  reason: {inst.reason or '-'}\n  original: {store.data_dir / inst.original_path if inst.original_path else '(deleted)'}")
    for e in events:
        print(f"  {e.at:%Y-%m-%d %H:%M:%S} {e.state:<22} {e.detail or ''}")
    for d in deliveries:
        print(f"  -> {d.destination}: {d.state} after {d.attempts} attempt(s) {d.last_error or ''}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    def add(name: str, func, help: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("serve", cmd_serve, "run the node (Storage SCP, pipeline, forwarding)")
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p = add("worker", cmd_worker, "run a scale-out worker (Celery) for a node with scale.celery_broker_url")
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p = add("check-config", cmd_check_config, "validate a configuration file; exit 2 with the reasons if invalid")
    p.add_argument("config", type=Path)
    p = add("echo", cmd_echo, "C-ECHO a configured destination")
    p.add_argument("destination")
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p = add("deid", cmd_deid, "de-identify one DICOM file's header as the node would (pixels blanked)")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p = add("queue", cmd_queue, "list deliveries, or retry failed (and with --pending, waiting) ones now")
    p.add_argument("action", choices=["list", "retry"])
    p.add_argument("--state", choices=["pending", "sending", "done", "failed"])
    p.add_argument("--destination", help="with retry: only this destination")
    p.add_argument("--id", type=int, help="with retry: only this failed delivery (an ID from queue list)")
    p.add_argument("--pending", action="store_true",
                   help="with retry: also send pending deliveries now instead of after their backoff")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
    p = add("quarantine", cmd_quarantine, "list, show, release or delete quarantined instances")
    p.add_argument("action", choices=["list", "show", "release", "delete"])
    p.add_argument("id", type=int, nargs="?")
    p.add_argument("--reason", help="with delete: why the original is deleted for good (kept in the audit trail)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
