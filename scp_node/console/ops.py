"""The console's operations, shared by the API and the pages: the Store's own methods (the ones the
command line calls) plus the console's audit trail. Responses carry pseudonymous identifiers only."""
from __future__ import annotations

import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from digimask.config.settings import ConfigError, load
from digimask.scp_node.console.context import ConsoleContext
from digimask.scp_node.logs import failure
from digimask.storage.accounts import Principal
from digimask.storage.lookup import Imported, MapRow
from digimask.storage.models import Delivery, Event, Instance, State
from digimask.storage.overview import (
    InstanceFilter,
    delete_quarantined,
    delivery_counts,
    drawn_geometry,
    event_rates,
    find_instances,
)

PREVIEW_MAX_SIDE = 1024
log = logging.getLogger(__name__)


def status(c: ConsoleContext) -> dict[str, Any]:
    s = c.settings
    return {
        "ae_title": s.node.ae_title, "address": f"{s.node.host}:{s.node.port}", "node_id": s.node.node_id,
        "version": c.version, "uptime_s": round(time.time() - c.started, 1),
        "workers": s.pipeline.workers, "mode": "celery" if s.scale.celery_broker_url else "embedded",
        "masker": s.pixels.masker, "destinations": [d.name for d in s.destinations],
        "instances": c.store.counts(), "deliveries": delivery_counts(c.store), "rates_per_minute": event_rates(c.store),
    }


def instance_json(i: Instance) -> dict[str, Any]:
    return {
        "id": i.id, "state": str(i.state.value if isinstance(i.state, State) else i.state),
        "pseudo_uid": i.pseudo_uid or None, "pseudo_patient_id": i.pseudo_patient_id, "sop_class_uid": i.sop_class_uid,
        "calling_ae": i.calling_ae, "called_ae": i.called_ae, "reason": i.reason,
        "received_at": i.received_at.isoformat() + "Z", "updated_at": i.updated_at.isoformat() + "Z",
        "original_retained": bool(i.original_path) and i.original_deleted_at is None, "masked_available": bool(i.output_path),
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "instance_id": d.instance_id, "destination": d.destination, "state": str(d.state),
            "attempts": d.attempts, "last_error": d.last_error, "next_attempt_at": d.next_attempt_at.isoformat() + "Z",
            "done_at": d.done_at.isoformat() + "Z" if d.done_at else None}


def event_json(e: Event) -> dict[str, Any]:
    return {"at": e.at.isoformat() + "Z", "state": e.state, "detail": e.detail, "node_id": e.node_id}


def instances(c: ConsoleContext, f: InstanceFilter) -> list[dict[str, Any]]:
    return [instance_json(i) for i in find_instances(c.store, f)]


def history(c: ConsoleContext, iid: int) -> dict[str, Any] | None:
    found = c.store.instance(iid)
    if found is None:
        return None
    inst, events, deliveries = found
    views = [{"at": a.at.isoformat() + "Z", "user": a.user, "action": a.action, "detail": a.detail}
             for a in reversed(c.accounts.audit_trail(1000, instance_id=iid))]
    return {"instance": instance_json(inst), "events": [event_json(e) for e in events],
            "deliveries": [delivery_json(d) for d in deliveries], "console": views}


def retry(c: ConsoleContext, who: Principal, destination: str | None, addr: str | None,
          delivery_id: int | None = None) -> int:
    """Requeue failed deliveries (one delivery, one destination's or all); KeyError for an unknown
    destination."""
    if destination and destination not in {d.name for d in c.settings.destinations}:
        raise KeyError(destination)
    n = c.store.retry_failed(destination, delivery_id)
    what = f"delivery {delivery_id}" if delivery_id is not None else destination or "all destinations"
    c.accounts.audit(who.name, "retry", address=addr, detail=f"{what}: {n} requeued")
    return n


def release(c: ConsoleContext, who: Principal, iid: int, addr: str | None) -> bool:
    ok = c.store.release(iid)
    if ok:
        c.accounts.audit(who.name, "release", address=addr, instance_id=iid)
    return ok


def delete(c: ConsoleContext, who: Principal, iid: int, reason: str, addr: str | None) -> bool:
    ok = delete_quarantined(c.store, iid, reason, who.name)
    if ok:
        c.accounts.audit(who.name, "delete", address=addr, instance_id=iid, detail=reason)
    return ok


def check_config(data: bytes) -> dict[str, Any]:
    """``digimask check-config`` of an uploaded file: the same loader, the same messages."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digimask.toml"
        path.write_bytes(data)
        try:
            s = load(path)
        except ConfigError as exc:
            return {"valid": False, "problems": [p.replace(str(path), "(uploaded file)") for p in exc.problems]}
    return {"valid": True, "problems": [], "summary": f"AE {s.node.ae_title} on {s.node.host}:{s.node.port}, masker "
            f"{s.pixels.masker}, {len(s.destinations)} destination(s), {len(s.routes)} route(s)"}


def preview(c: ConsoleContext, who: Principal, iid: int, original: bool, addr: str | None) -> bytes | None:
    """The first frame as PNG: the masked output while the node holds it, or the original (the caller
    checked the privacy role) while it is retained; a view of an original is audited before it is sent."""
    from digimask.pipeline.dicom.decode import decode
    from digimask.pipeline.dicom.read import read
    from digimask.pipeline.errors import Quarantined
    from PIL import Image

    found = c.store.instance(iid)
    if found is None:
        return None
    inst = found[0]
    rel = (inst.original_path if inst.original_deleted_at is None else None) if original else inst.output_path
    if not rel or not (c.store.data_dir / rel).exists():
        return None
    try:
        frame = decode(read(c.store.data_dir / rel), c.settings.storage.max_pixels).rgb[0]
    except Quarantined:
        return None
    except Exception as exc:  # noqa: BLE001 -- pydicom's messages may quote values: the type only
        log.warning("instance %s: no preview (%s)", iid, failure(exc))
        return None
    if original:
        c.accounts.audit(who.name, "view original", address=addr, instance_id=iid)
    img = Image.fromarray(frame)
    img.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def mask_params(c: ConsoleContext, iid: int) -> dict[str, Any] | None:
    """The masked output's DIGIMASK block (the fitted head and eye geometry and the measurements the mask
    keeps; no identity by the masker's contract), while the node holds the output."""
    import pydicom
    from digimask.pipeline.dicom import private_block

    found = c.store.instance(iid)
    if found is None or not found[0].output_path or not (c.store.data_dir / found[0].output_path).exists():
        return None
    block = private_block.read(pydicom.dcmread(c.store.data_dir / found[0].output_path, stop_before_pixels=True))
    if block is None:
        return None
    schema, masker, params = block
    return {"schema": schema, "masker": masker, "params": params}


def drawn(c: ConsoleContext, iid: int) -> dict[str, Any] | None:
    """What the mask drew (``digimask.geometry/1``: eye geometry in the masked image's pixels, as the worker
    kept it), while the node holds the masked output it belongs to."""
    found = c.store.instance(iid)
    if found is None or not found[0].output_path or not (c.store.data_dir / found[0].output_path).exists():
        return None
    return drawn_geometry(c.store, iid)


def lookup_import(c: ConsoleContext, who: Principal, text: str, addr: str | None) -> Imported:
    done = c.map.import_csv(text)
    c.accounts.audit(who.name, "lookup import", address=addr,
                     detail=f"{done.added} added, {done.updated} updated, {done.previously_seen} previously seen")
    return done


def lookup_show(c: ConsoleContext, who: Principal, pseudonym: str, addr: str | None) -> list[MapRow]:
    rows = c.map.rows(pseudonym)
    c.accounts.audit(who.name, "lookup show", address=addr, detail=f"{pseudonym}: {len(rows)} found")
    return rows


def lookup_export(c: ConsoleContext, who: Principal, key: bytes, addr: str | None) -> bytes:
    data = c.map.export(key)
    c.accounts.audit(who.name, "lookup export", address=addr, detail=f"{sum(c.map.counts().values())} entries")
    return data
