"""The web pages: server-rendered (Jinja2), no JavaScript, over the same operations as the API."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from digimask.scp_node.console import ops
from digimask.scp_node.console.auth import (
    Login,
    address,
    ctx,
    current,
    login,
    logout,
    page_needs,
    set_session_cookie,
)
from digimask.storage.accounts import Principal
from digimask.storage.lookup import LookupImportError
from digimask.storage.models import Role, State
from digimask.storage.overview import InstanceFilter
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(page_needs(Role.VIEWER))]
Operator = Annotated[Principal, Depends(page_needs(Role.OPERATOR))]
Privacy = Annotated[Principal, Depends(page_needs(Role.PRIVACY))]


def render(request: Request, name: str, who: Principal | None, status_code: int = 200, **data: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"who": who, "node": ctx(request).settings.node, **data},
                                      status_code=status_code)


def back(url: str, note: str = "") -> RedirectResponse:
    return RedirectResponse(url + (f"?{urlencode({'note': note})}" if note else ""), status_code=303)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    who = current(request)
    if who is None:
        return render(request, "login.html", None)
    return render(request, "dashboard.html", who, status=ops.status(ctx(request)),
                  recent=ops.instances(ctx(request), InstanceFilter(limit=10)), refresh=5)


@router.post("/login", response_class=HTMLResponse)
def do_login(request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()]) -> Response:
    result, secret, _ = login(ctx(request), name[:64], password[:1024], address(request))
    if result is Login.OK and secret is not None:
        response = back("/")
        set_session_cookie(ctx(request), response, secret)
        return response
    message = "Too many failed logins: wait a few minutes." if result is Login.THROTTLED else "Wrong user name or password."
    return render(request, "login.html", None, status_code=429 if result is Login.THROTTLED else 401, error=message)


@router.post("/logout")
def do_logout(request: Request, who: Viewer) -> Response:
    response = back("/")
    logout(request, response, who)
    return response


@router.get("/queues", response_class=HTMLResponse)
def queues(request: Request, who: Viewer, state: str = "", destination: str = "") -> HTMLResponse:
    c = ctx(request)
    f = InstanceFilter(State(state) if state in {s.value for s in State} else None, destination or None, limit=200)
    return render(request, "queues.html", who, status=ops.status(c), instances=ops.instances(c, f),
                  deliveries=[ops.delivery_json(d) for d in c.store.deliveries(None, 50)],
                  states=[s.value for s in State], state=state, destination=destination, refresh=5,
                  note=request.query_params.get("note", ""))


@router.post("/retry")
def retry(request: Request, who: Operator, destination: Annotated[str, Form()] = "") -> Response:
    try:
        n = ops.retry(ctx(request), who, destination or None, address(request))
    except KeyError:
        raise HTTPException(404, "unknown destination") from None
    return back("/queues", f"{n} failed deliveries requeued")


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine(request: Request, who: Viewer) -> HTMLResponse:
    rows = [ops.instance_json(i) for i in ctx(request).store.instances(State.QUARANTINED, 200)]
    return render(request, "quarantine.html", who, rows=rows, note=request.query_params.get("note", ""))


@router.get("/instances/{iid}", response_class=HTMLResponse)
def instance(iid: int, request: Request, who: Viewer, overlay: str = "") -> HTMLResponse:
    """``overlay=1``: the drawn eye geometry over the masked image; ``overlay=eyes``: the same, enlarged to the eyes."""
    found = ops.history(ctx(request), iid)
    if found is None:
        raise HTTPException(404, f"no instance {iid}")
    timeline = sorted([{**e, "what": e["state"], "who": e["detail"] or ""} for e in found["events"]]
                      + [{**a, "what": f"console: {a['action']}", "who": a["user"] + (f": {a['detail']}" if a["detail"] else "")}
                         for a in found["console"]], key=lambda e: e["at"])
    params = ops.mask_params(ctx(request), iid)
    geometry = ops.drawn(ctx(request), iid)
    return render(request, "instance.html", who, h=found, i=found["instance"], timeline=timeline,
                  params=json.dumps(params["params"], indent=1) if params else None, has_geometry=geometry is not None,
                  overlay=svg_overlay(geometry, enlarged=overlay == "eyes") if geometry and overlay else None,
                  may_operate=who.may(Role.OPERATOR),
                  may_see_original=who.may(Role.PRIVACY), note=request.query_params.get("note", ""))


def svg_overlay(doc: dict[str, Any], enlarged: bool = False) -> dict[str, Any]:
    """The drawn geometry as the instance page's SVG draws it: the image's user space is its pixels, so the
    masked preview (any size) and the geometry line up; ``enlarged`` crops the view box to the eyes."""
    w, h = doc["image"]["width"], doc["image"]["height"]
    eyes, xs, ys = {}, [], []
    for side, e in doc["eyes"].items():
        rim = e["upper_lid"] + e["lower_lid"]
        xs += [p[0] for p in rim]
        ys += [p[1] for p in rim]
        eyes[side] = {**e, "upper": _svg_points(e["upper_lid"]), "lower": _svg_points(e["lower_lid"])}
    box = (0.0, 0.0, float(w), float(h))
    if enlarged and xs:
        margin = 0.5 * max(max(xs) - min(xs), max(ys) - min(ys), 8.0)
        x0, y0 = max(0.0, min(xs) - margin), max(0.0, min(ys) - margin)
        box = (x0, y0, min(float(w), max(xs) + margin) - x0, min(float(h), max(ys) + margin) - y0)
    mark = round(box[2] / 250, 2)  # the point markers' radius: about 2 screen pixels at any zoom
    return {"width": w, "height": h, "view_box": " ".join(f"{v:.1f}" for v in box), "eyes": eyes, "mark": mark,
            "enlarged": enlarged}


def _svg_points(points: list[list[float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


@router.get("/instances/{iid}/original", response_class=HTMLResponse)
def original(iid: int, request: Request, who: Privacy) -> HTMLResponse:
    found = ops.history(ctx(request), iid)
    if found is None or not found["instance"]["original_retained"]:
        raise HTTPException(404, "the original is no longer retained")
    return render(request, "original.html", who, i=found["instance"])


@router.post("/instances/{iid}/release")
def release(iid: int, request: Request, who: Operator) -> Response:
    ok = ops.release(ctx(request), who, iid, address(request))
    return back(f"/instances/{iid}", "released: it goes through the pipeline again" if ok else "not in quarantine")


@router.post("/instances/{iid}/delete")
def delete(iid: int, request: Request, who: Operator, reason: Annotated[str, Form(min_length=3, max_length=200)]) -> Response:
    ok = ops.delete(ctx(request), who, iid, reason, address(request))
    return back(f"/instances/{iid}", "original deleted" if ok else "not in quarantine with its original")


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, who: Viewer) -> HTMLResponse:
    return render(request, "audit.html", who, rows=ctx(request).accounts.audit_trail(300))


@router.get("/config", response_class=HTMLResponse)
def config(request: Request, who: Viewer) -> HTMLResponse:
    return render(request, "config.html", who, config=json.dumps(ctx(request).effective_config(), indent=2))


@router.post("/config/check", response_class=HTMLResponse)
async def check_config(request: Request, who: Viewer, file: Annotated[UploadFile, File()]) -> HTMLResponse:
    result = ops.check_config(await file.read(1_000_000))
    return render(request, "config.html", who, config=json.dumps(ctx(request).effective_config(), indent=2), check=result)


@router.get("/lookup", response_class=HTMLResponse)
def lookup(request: Request, who: Privacy, pseudonym: str = "") -> HTMLResponse:
    c = ctx(request)
    rows = ops.lookup_show(c, who, pseudonym.strip(), address(request)) if pseudonym.strip() else None
    return render(request, "lookup.html", who, counts=c.map.counts(), pseudonym=pseudonym, rows=rows,
                  note=request.query_params.get("note", ""))


@router.post("/lookup/import", response_class=HTMLResponse)
async def lookup_import(request: Request, who: Privacy, file: Annotated[UploadFile, File()]) -> Response:
    c = ctx(request)
    try:
        done = ops.lookup_import(c, who, (await file.read(20_000_000)).decode("utf-8-sig"), address(request))
    except (LookupImportError, UnicodeDecodeError) as exc:
        problems = exc.problems if isinstance(exc, LookupImportError) else ["not UTF-8 text"]
        return render(request, "lookup.html", who, status_code=422, counts=c.map.counts(), pseudonym="", rows=None,
                      problems=problems)
    return back("/lookup", f"imported: {done.added} added, {done.updated} updated, {done.previously_seen} seen before under another pseudonym")
